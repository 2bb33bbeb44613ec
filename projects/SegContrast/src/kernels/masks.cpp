// Masks against masks and label maps: intersections, painting, confusion matrices.
#include <cstring>

#include "common.hpp"
#include "parts.hpp"

namespace segcontrast {
namespace {

constexpr uint8_t kIgnore = 255;

struct LabelMap {
    uint8_t* data;
    int64_t height, width;
};

template <typename Array>
void check_image(const Array& a, int64_t height, int64_t width, const char* what) {
    if (a.ndim() != 2 || a.shape(0) != height || a.shape(1) != width)
        throw std::invalid_argument(std::string(what) + " must be (H, W)");
}

// (N, M) pixel counts of a_i & b_j.
Int64Array pairwise_intersections(const py::handle& a_boxes, const py::handle& a_crops,
                                  const py::handle& a_areas, const py::handle& b_boxes,
                                  const py::handle& b_crops, const py::handle& b_areas) {
    Masks a(a_boxes, a_crops, a_areas), b(b_boxes, b_crops, b_areas);
    Int64Array out({static_cast<py::ssize_t>(a.size()), static_cast<py::ssize_t>(b.size())});
    int64_t* o = out.mutable_data();
    for (size_t i = 0; i < a.size(); ++i) {
        for (size_t j = 0; j < b.size(); ++j) {
            const Crop &ca = a[i], &cb = b[j];
            o[i * b.size() + j] =
                (ca.area > 0 && cb.area > 0 && ca.box.meets(cb.box)) ? count_and(ca, cb) : 0;
        }
    }
    return out;
}

// Paint masks in the given order (later wins): labels[pixel] = values[i] where mask i is set.
void paint(py::array_t<uint8_t, py::array::c_style> labels, const py::handle& boxes,
           const py::handle& crops, const py::handle& areas, const ByteArray& values,
           const Int64Array& order) {
    Masks masks(boxes, crops, areas);
    const int64_t width = labels.shape(1);
    uint8_t* out = labels.mutable_data();
    const uint8_t* v = values.data();
    const int64_t* ord = order.data();
    for (py::ssize_t k = 0; k < order.size(); ++k) {
        const Crop& c = masks[ord[k]];
        if (c.area <= 0) continue;
        const uint8_t value = v[ord[k]];
        const int64_t w = c.box.width();
        for (int64_t y = 0; y < c.box.height(); ++y) {
            const uint8_t* src = c.data + y * c.stride;
            uint8_t* dst = out + (c.box.y0 + y) * width + c.box.x0;
            for (int64_t x = 0; x < w; ++x) dst[x] = src[x] ? value : dst[x];
        }
    }
}

// segcontrast.data.semantic_gt.paint_semantic_gt's rule: a pixel of non-crowd instances of one
// class gets class + 1, of two or more classes 255; a pixel of crowd regions only, 255.
py::array_t<uint8_t> paint_semantic_gt(const py::handle& boxes, const py::handle& crops,
                                       const py::handle& areas, const Int64Array& classes,
                                       const py::array_t<bool>& crowd, int64_t height,
                                       int64_t width) {
    Masks masks(boxes, crops, areas);
    py::array_t<uint8_t> labels({height, width});
    uint8_t* out = labels.mutable_data();
    std::memset(out, 0, static_cast<size_t>(height * width));
    const int64_t* cls = classes.data();
    const bool* is_crowd = crowd.data();
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < masks.size(); ++i) {
            const Crop& c = masks[i];
            if (c.area <= 0 || is_crowd[i] != (pass == 1)) continue;
            const uint8_t value = static_cast<uint8_t>(cls[i] + 1);
            for (int64_t y = 0; y < c.box.height(); ++y) {
                const uint8_t* src = c.data + y * c.stride;
                uint8_t* dst = out + (c.box.y0 + y) * width + c.box.x0;
                for (int64_t x = 0; x < c.box.width(); ++x) {
                    if (!src[x]) continue;
                    if (pass == 1) {
                        if (dst[x] == 0) dst[x] = kIgnore;
                    } else if (dst[x] == 0) {
                        dst[x] = value;
                    } else if (dst[x] != value) {
                        dst[x] = kIgnore;
                    }
                }
            }
        }
    }
    return labels;
}

// (L, L) confusion of two (H, W) label maps, rows ground truth; ground truth 255 left out.
Int64Array confusion_matrix(const ByteArray& gt, const ByteArray& pred, int64_t num_labels) {
    if (gt.ndim() != 2 || pred.ndim() != 2 || gt.shape(0) != pred.shape(0) ||
        gt.shape(1) != pred.shape(1))
        throw std::invalid_argument("label maps of different shapes");
    Int64Array out({num_labels, num_labels});
    int64_t* counts = out.mutable_data();
    std::fill(counts, counts + num_labels * num_labels, 0);
    const int64_t n = gt.size();
    const uint8_t* g = gt.data();
    const uint8_t* p = pred.data();
    int64_t others = 0, ignored = 0;
    int64_t i = 0;
    // most pixels are background in both: skip eight at a time
    for (; i + 8 <= n; i += 8) {
        uint64_t wg, wp;
        std::memcpy(&wg, g + i, 8);
        std::memcpy(&wp, p + i, 8);
        if ((wg | wp) == 0) continue;
        for (int64_t k = i; k < i + 8; ++k) {
            if (g[k] == kIgnore) {
                ++ignored;
            } else if (g[k] | p[k]) {
                if (g[k] >= num_labels || p[k] >= num_labels)
                    throw std::invalid_argument("labels outside [0, num_labels)");
                ++counts[g[k] * num_labels + p[k]];
                ++others;
            }
        }
    }
    for (; i < n; ++i) {
        if (g[i] == kIgnore) {
            ++ignored;
        } else if (g[i] | p[i]) {
            if (g[i] >= num_labels || p[i] >= num_labels)
                throw std::invalid_argument("labels outside [0, num_labels)");
            ++counts[g[i] * num_labels + p[i]];
            ++others;
        }
    }
    counts[0] = n - others - ignored;
    return out;
}

// Change of the confusion matrix of `painted` (rows: `gt`) when the pixels of the touched
// boxes are repainted with the masks (in `order`, later wins, background elsewhere).
Int64Array window_confusion_delta(const ByteArray& gt, const ByteArray& painted,
                                  const py::handle& boxes, const py::handle& crops,
                                  const py::handle& areas, const ByteArray& values,
                                  const Int64Array& order, const Int64Array& touched,
                                  int64_t num_labels) {
    Masks masks(boxes, crops, areas);
    const int64_t width = gt.shape(1);
    check_image(painted, gt.shape(0), width, "painted");
    Int64Array out({num_labels, num_labels});
    int64_t* counts = out.mutable_data();
    std::fill(counts, counts + num_labels * num_labels, 0);
    std::vector<Box> boxes_touched;
    const int64_t* t = touched.data();
    for (py::ssize_t k = 0; k < touched.size() / 4; ++k)
        boxes_touched.push_back({t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]});
    window_delta(gt.data(), painted.data(), width, masks.items(), values.data(), order.data(),
                 static_cast<size_t>(order.size()), boxes_touched, num_labels, counts);
    return out;
}

}  // namespace

// Disjoint windows covering the boxes: overlapping ones merged until none overlap; one window
// instead of several when they fill more than half of their bounding box anyway.
static std::vector<Box> clusters(const std::vector<Box>& boxes) {
    std::vector<Box> current;
    for (const Box& b : boxes)
        if (b.x1 > b.x0 && b.y1 > b.y0) current.push_back(b);
    bool merged = true;
    while (merged && current.size() > 1) {
        merged = false;
        std::vector<Box> out;
        for (const Box& b : current) {
            bool joined = false;
            for (Box& o : out) {
                if (b.meets(o)) {
                    o = {std::min(o.x0, b.x0), std::min(o.y0, b.y0), std::max(o.x1, b.x1),
                         std::max(o.y1, b.y1)};
                    merged = joined = true;
                    break;
                }
            }
            if (!joined) out.push_back(b);
        }
        current = std::move(out);
    }
    if (current.size() > 1) {
        Box all = current[0];
        int64_t covered = 0;
        for (const Box& b : current) {
            all = {std::min(all.x0, b.x0), std::min(all.y0, b.y0), std::max(all.x1, b.x1),
                   std::max(all.y1, b.y1)};
            covered += b.width() * b.height();
        }
        if (2 * covered > all.width() * all.height()) return {all};
    }
    return current;
}

void window_delta(const uint8_t* g, const uint8_t* old, int64_t width,
                  const std::vector<Crop>& masks, const uint8_t* v, const int64_t* ord,
                  size_t n_order, const std::vector<Box>& touched, int64_t num_labels,
                  int64_t* counts) {
    constexpr uint8_t kIgnoreLabel = 255;
    const std::vector<Box> windows = clusters(touched);
    std::vector<uint8_t> fresh;
    for (const Box& win : windows) {
        const int64_t ww = win.width();
        fresh.assign(static_cast<size_t>(ww * win.height()), 0);
        for (size_t q = 0; q < n_order; ++q) {
            const Crop& c = masks[ord[q]];
            if (c.area <= 0 || !c.box.meets(win)) continue;
            const Box r = intersect(c.box, win);
            const uint8_t value = v[ord[q]];
            const int64_t w = r.x1 - r.x0;
            for (int64_t y = r.y0; y < r.y1; ++y) {
                const uint8_t* src = c.data + (y - c.box.y0) * c.stride + (r.x0 - c.box.x0);
                uint8_t* dst = fresh.data() + (y - win.y0) * ww + (r.x0 - win.x0);
                for (int64_t x = 0; x < w; ++x) dst[x] = src[x] ? value : dst[x];
            }
        }
        for (int64_t y = win.y0; y < win.y1; ++y) {
            const uint8_t* nrow = fresh.data() + (y - win.y0) * ww - win.x0;
            for (int64_t x = win.x0; x < win.x1; ++x) {
                const uint8_t label = g[y * width + x], before = old[y * width + x];
                if (nrow[x] == before || label == kIgnoreLabel) continue;
                ++counts[label * num_labels + nrow[x]];
                --counts[label * num_labels + before];
            }
        }
    }
}

void register_masks(py::module_& m) {
    m.def("pairwise_intersections", &pairwise_intersections, "(N, M) |a_i & b_j|");
    m.def("paint", &paint, "Paint masks into a label map in the given order.");
    m.def("paint_semantic_gt", &paint_semantic_gt, "The semantic ground truth of one image.");
    m.def("confusion_matrix", &confusion_matrix, "Confusion matrix of two label maps.");
    m.def("window_confusion_delta", &window_confusion_delta,
          "Confusion-matrix change when the touched boxes are repainted.");
}

}  // namespace segcontrast
