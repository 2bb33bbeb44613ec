// Panoptic segments of one image (both sides made non-overlapping) and their PQ statistics,
// with the rules of segcontrast.evaluation.metrics.panoptic.
#include <cstring>

#include "common.hpp"
#include "parts.hpp"

namespace segcontrast {
namespace {

template <typename Label>
void paint_gt(Label* labels, int64_t width, const Masks& masks, const int64_t* values,
              const bool* crowd, int64_t first_crowd, int64_t void_label, int64_t* areas) {
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < masks.size(); ++i) {
            const Crop& c = masks[i];
            if (values[i] < 0 || c.area <= 0 || crowd[i] != (pass == 1)) continue;
            const Label value = static_cast<Label>(values[i]);
            for (int64_t y = 0; y < c.box.height(); ++y) {
                const uint8_t* src = c.data + y * c.stride;
                Label* dst = labels + (c.box.y0 + y) * width + c.box.x0;
                for (int64_t x = 0; x < c.box.width(); ++x) {
                    if (!src[x]) continue;
                    const Label old = dst[x];
                    if (old == 0) {
                        dst[x] = value;
                        ++areas[values[i]];
                    } else if (pass == 0 ||
                               (old >= first_crowd && old != value && old != void_label)) {
                        // a non-crowd instance turns every shared pixel VOID; a crowd region
                        // only the pixels of another class's crowd segment
                        --areas[old];
                        ++areas[void_label];
                        dst[x] = static_cast<Label>(void_label);
                    }
                }
            }
        }
    }
}

// (labels (H, W), areas (L,)) of gt_segments: values[i] is annotation i's label (-1: none).
py::tuple gt_labels(const py::handle& boxes, const py::handle& crops, const py::handle& areas,
                    const Int64Array& values, const py::array_t<bool>& crowd, int64_t height,
                    int64_t width, int64_t first_crowd, int64_t num_labels) {
    Masks masks(boxes, crops, areas);
    Int64Array label_areas({num_labels});
    int64_t* a = label_areas.mutable_data();
    std::fill(a, a + num_labels, 0);
    const int64_t void_label = num_labels - 1;
    py::array labels;
    if (num_labels < 65536) {
        py::array_t<uint16_t> out({height, width});
        std::memset(out.mutable_data(), 0, static_cast<size_t>(height * width) * 2);
        paint_gt(out.mutable_data(), width, masks, values.data(), crowd.data(), first_crowd,
                 void_label, a);
        labels = out;
    } else {
        py::array_t<int32_t> out({height, width});
        std::memset(out.mutable_data(), 0, static_cast<size_t>(height * width) * 4);
        paint_gt(out.mutable_data(), width, masks, values.data(), crowd.data(), first_crowd,
                 void_label, a);
        labels = out;
    }
    int64_t taken = 0;
    for (int64_t k = 1; k < num_labels; ++k) taken += a[k];
    a[0] = height * width - taken;
    return py::make_tuple(labels, label_areas);
}

// The first position from x on (before end) whose byte is not `value` (0 or 1), eight at once.
inline int64_t skip_bytes(const uint8_t* bytes, int64_t x, int64_t end, uint8_t value) {
    const uint64_t word = value ? 0x0101010101010101ULL : 0;
    for (uint64_t w; x + 8 <= end; x += 8) {
        std::memcpy(&w, bytes + x, 8);
        if (w != word) break;
    }
    while (x < end && bytes[x] == value) ++x;
    return x;
}

// The first position from p on (before end) whose label is not `label`.
template <typename Label>
inline int64_t skip_labels(const Label* labels, int64_t p, int64_t end, Label label) {
    constexpr int64_t per_word = 8 / sizeof(Label);
    uint64_t word = 0;
    for (int64_t k = 0; k < per_word; ++k)
        std::memcpy(reinterpret_cast<char*>(&word) + k * sizeof(Label), &label, sizeof(Label));
    for (uint64_t w; p + per_word <= end; p += per_word) {
        std::memcpy(&w, labels + p, 8);
        if (w != word) break;
    }
    while (p < end && labels[p] == label) ++p;
    return p;
}

template <typename Label>
void segments_core(const std::vector<Crop>& masks, const int64_t* ord, size_t n_order,
                   const Label* gt, int64_t height, int64_t width, int64_t num_labels,
                   double overlap_threshold, const SegmentBuffer* make_crop,
                   const int64_t* gt_copy, const int64_t* gt_areas, bool* k, int64_t* a,
                   int64_t* h, PriorSegments* prior) {
    if (prior && make_crop) throw std::invalid_argument("earlier segments without crops only");
    const size_t n = masks.size();
    std::fill(k, k + n, false);
    std::fill(a, a + n, 0);
    std::fill(h, h + n * num_labels, 0);
    // pixels taken by the segments so far: a zeroed buffer kept between calls, cleared again
    // (box by box) before returning
    thread_local std::vector<uint8_t> taken;
    if (taken.size() < static_cast<size_t>(height * width))
        taken.assign(static_cast<size_t>(height * width), 0);
    struct Clear {
        std::vector<uint8_t>& buffer;
        const std::vector<Crop>& masks;
        const bool* kept;
        int64_t width;
        ~Clear() {
            for (size_t i = 0; i < masks.size(); ++i) {
                const Crop& c = masks[i];
                if (!kept[i]) continue;
                for (int64_t y = c.box.y0; y < c.box.y1; ++y)
                    std::fill_n(buffer.begin() + y * width + c.box.x0, c.box.width(), 0);
            }
        }
    } clear{taken, masks, k, width};
    std::vector<uint8_t> fresh;
    for (size_t q = 0; q < n_order; ++q) {
        const int64_t i = ord[q];
        const Crop& c = masks[i];
        if (c.area <= 0) continue;
        const int64_t ch = c.box.height(), cw = c.box.width();
        const int64_t earlier = prior ? prior->position[i] : -1;
        if (earlier >= 0 && std::none_of(prior->changed.begin(), prior->changed.end(),
                                         [&](const Box& b) { return b.meets(c.box); })) {
            // what is above it within its box is what was: its earlier segment
            if (!prior->kept[earlier]) continue;
            k[i] = true;
            a[i] = prior->areas[earlier];
            std::copy_n(prior->hist + earlier * num_labels, num_labels, h + i * num_labels);
            for (int64_t y = 0; y < ch; ++y) {
                const uint8_t* src = c.data + y * c.stride;
                uint8_t* t = taken.data() + (c.box.y0 + y) * width + c.box.x0;
                for (int64_t x = 0; x < cw; ++x) t[x] |= src[x];
            }
            continue;
        }
        int64_t lost = 0;
        for (int64_t y = 0; y < ch; ++y) {
            const uint8_t* src = c.data + y * c.stride;
            const uint8_t* t = taken.data() + (c.box.y0 + y) * width + c.box.x0;
            for (int64_t x = 0; x < cw; ++x) lost += src[x] & t[x];
        }
        // the same float expression as Detectron2's, so the same masks are dropped
        const bool dropped =
            static_cast<double>(lost) * 1.0 / static_cast<double>(c.area) > overlap_threshold;
        if (prior && dropped == (earlier >= 0 && prior->kept[earlier]))
            prior->changed.push_back(c.box);  // a mask above the later ones differs here
        if (dropped) continue;
        k[i] = true;
        a[i] = c.area - lost;
        int64_t* row = h + i * num_labels;
        if (lost == 0 && gt_copy && gt_copy[i] >= 0 && !make_crop) {
            // the exact mask of non-crowd instance r: its pixels are its segment's (label
            // r + 1, all of which lie in it) or VOID
            const int64_t label = gt_copy[i] + 1;
            row[label] = gt_areas[label];
            row[num_labels - 1] = c.area - gt_areas[label];
            for (int64_t y = 0; y < ch; ++y) {
                const uint8_t* src = c.data + y * c.stride;
                uint8_t* t = taken.data() + (c.box.y0 + y) * width + c.box.x0;
                for (int64_t x = 0; x < cw; ++x) t[x] |= src[x];
            }
            continue;
        }
        uint8_t* seg = make_crop ? (*make_crop)(static_cast<size_t>(i), ch, cw) : nullptr;
        // per row: spans of the segment's pixels, and within a span runs of one label
        fresh.assign(static_cast<size_t>(cw), 0);
        for (int64_t y = 0; y < ch; ++y) {
            const uint8_t* src = c.data + y * c.stride;
            uint8_t* t = taken.data() + (c.box.y0 + y) * width + c.box.x0;
            const Label* g = gt + (c.box.y0 + y) * width + c.box.x0;
            uint8_t* f = fresh.data();
            for (int64_t x = 0; x < cw; ++x) {
                f[x] = src[x] & (t[x] ^ 1);
                t[x] |= src[x];
            }
            int64_t x = 0;
            while (x < cw) {
                x = skip_bytes(f, x, cw, 0);
                const int64_t span = x;
                x = skip_bytes(f, x, cw, 1);
                if (seg) std::fill(seg + y * cw + span, seg + y * cw + x, uint8_t{1});
                for (int64_t p = span; p < x;) {
                    const Label label = g[p];
                    const int64_t start = p;
                    p = skip_labels(g, p, x, label);
                    if (static_cast<int64_t>(label) < 0 || static_cast<int64_t>(label) >= num_labels)
                        throw std::invalid_argument("ground-truth label outside [0, L)");
                    row[static_cast<int64_t>(label)] += p - start;
                }
            }
        }
    }
}

// (kept, areas, hist, crops) of pred_segments, from scratch; crops None unless want_crops.
py::tuple pred_segments(const py::handle& boxes, const py::handle& crops,
                        const py::handle& areas, const Int64Array& order,
                        const py::array& gt_labels, int64_t num_labels,
                        double overlap_threshold, bool want_crops, const py::object& gt_copy,
                        const Int64Array& gt_areas) {
    Masks masks(boxes, crops, areas);
    Int64Array copies;
    const int64_t* copy = nullptr;
    if (!gt_copy.is_none()) {
        copies = Int64Array::ensure(gt_copy);
        if (static_cast<size_t>(copies.size()) != masks.size())
            throw std::invalid_argument("gt_copy must be (N,)");
        copy = copies.data();
        for (py::ssize_t i = 0; i < copies.size(); ++i)
            if (copy[i] + 1 >= num_labels - 1 || (copy[i] >= 0 && gt_areas.size() != num_labels))
                throw std::invalid_argument("gt_copy outside the ground truth's instances");
    }
    if (gt_labels.ndim() != 2) throw std::invalid_argument("gt labels must be (H, W)");
    const int64_t height = gt_labels.shape(0), width = gt_labels.shape(1);
    for (size_t i = 0; i < masks.size(); ++i) {
        const Box& b = masks[i].box;
        if (masks[i].area > 0 && (b.x0 < 0 || b.y0 < 0 || b.x1 > width || b.y1 > height))
            throw std::invalid_argument("a mask outside the image");
    }
    for (py::ssize_t q = 0; q < order.size(); ++q)
        if (order.data()[q] < 0 || static_cast<size_t>(order.data()[q]) >= masks.size())
            throw std::invalid_argument("order outside the masks");
    const auto n = static_cast<py::ssize_t>(masks.size());
    py::array_t<bool> kept({n});
    Int64Array seg_areas({n});
    Int64Array hist({n, static_cast<py::ssize_t>(num_labels)});
    py::list segment_crops(n);
    for (py::ssize_t i = 0; i < n; ++i) segment_crops[i] = py::none();
    const SegmentBuffer make_crop = [&segment_crops](size_t i, int64_t h, int64_t w) {
        py::array_t<bool> segment({h, w});
        auto* data = reinterpret_cast<uint8_t*>(segment.mutable_data());
        std::memset(data, 0, static_cast<size_t>(h * w));
        segment_crops[i] = segment;
        return data;
    };
    const SegmentBuffer* maker = want_crops ? &make_crop : nullptr;
    const GtSegments gt{gt_labels.data(), !py::isinstance<py::array_t<uint16_t>>(gt_labels),
                        height, width, num_labels, gt_areas.data()};
    py::array labels_held;
    GtSegments view = gt;
    if (view.wide) {
        labels_held =
            py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(gt_labels);
        view.labels = labels_held.data();
    } else {
        labels_held = py::array_t<uint16_t, py::array::c_style>::ensure(gt_labels);
        view.labels = labels_held.data();
    }
    segments_into(masks.items(), order.data(), static_cast<size_t>(order.size()), view,
                  overlap_threshold, maker, copy, kept.mutable_data(), seg_areas.mutable_data(),
                  hist.mutable_data());
    return py::make_tuple(kept, seg_areas, hist, segment_crops);
}

// panoptic_stats: per category (TP, FP, FN, matched-IoU sum) as panopticapi counts them.
DoubleArray panoptic_stats(const Int64Array& pred_categories, const py::array_t<bool>& kept,
                           const Int64Array& seg_areas, const Int64Array& hist,
                           const Int64Array& gt_areas, const Int64Array& gt_categories,
                           const py::array_t<bool>& gt_crowd, const Int64Array& crowd_classes,
                           int64_t num_categories, int64_t image_pixels) {
    DoubleArray out({num_categories, int64_t{4}});
    stats_into(pred_categories.data(), kept.data(), seg_areas.data(), hist.data(),
               static_cast<int64_t>(kept.size()), gt_areas.data(), gt_categories.data(),
               gt_crowd.data(), static_cast<int64_t>(gt_areas.size()), crowd_classes.data(),
               static_cast<int64_t>(crowd_classes.size()), num_categories, image_pixels,
               out.mutable_data());
    return out;
}

}  // namespace

void segments_into(const std::vector<Crop>& masks, const int64_t* order, size_t n_order,
                   const GtSegments& gt, double overlap_threshold, const SegmentBuffer* make_crop,
                   const int64_t* gt_copy, bool* kept, int64_t* areas, int64_t* hist,
                   PriorSegments* prior) {
    if (gt.wide)
        segments_core(masks, order, n_order, static_cast<const int32_t*>(gt.labels), gt.height,
                      gt.width, gt.num_labels, overlap_threshold, make_crop, gt_copy, gt.areas,
                      kept, areas, hist, prior);
    else
        segments_core(masks, order, n_order, static_cast<const uint16_t*>(gt.labels),
                      gt.height, gt.width, gt.num_labels, overlap_threshold, make_crop, gt_copy,
                      gt.areas, kept, areas, hist, prior);
}

void stats_into(const int64_t* pred_categories_data, const bool* k, const int64_t* pa,
                const int64_t* ph, int64_t n_pred, const int64_t* ga, const int64_t* gc,
                const bool* gcrowd, int64_t num_labels, const int64_t* crowd_classes_data,
                int64_t n_crowd_classes, int64_t num_categories, int64_t image_pixels,
                double* stats) {
    const int64_t void_label = num_labels - 1;
    // segments: the kept predictions, then the background when it has pixels
    std::vector<int64_t> seg;
    for (int64_t i = 0; i < n_pred; ++i)
        if (k[i]) seg.push_back(i);
    int64_t covered = 0;
    for (int64_t i : seg) covered += pa[i];
    const int64_t background_area = image_pixels - covered;
    const size_t rows = seg.size() + (background_area > 0 ? 1 : 0);
    std::vector<int64_t> cats(rows, 0), areas(rows, 0), h(rows * num_labels, 0);
    for (size_t r = 0; r < seg.size(); ++r) {
        cats[r] = pred_categories_data[seg[r]];
        areas[r] = pa[seg[r]];
        std::copy(ph + seg[r] * num_labels, ph + (seg[r] + 1) * num_labels,
                  h.begin() + r * num_labels);
    }
    if (background_area > 0) {
        const size_t r = seg.size();
        areas[r] = background_area;
        for (int64_t c = 0; c < num_labels; ++c) {
            int64_t used = 0;
            for (size_t s = 0; s < seg.size(); ++s) used += h[s * num_labels + c];
            h[r * num_labels + c] = ga[c] - used;
        }
    }
    std::vector<bool> valid_gt(num_labels);
    for (int64_t c = 0; c < num_labels; ++c)
        valid_gt[c] = ga[c] > 0 && !gcrowd[c] && c != void_label;
    std::fill(stats, stats + num_categories * 4, 0.0);
    std::vector<bool> matched_row(rows, false), matched_gt(num_labels, false);
    for (size_t r = 0; r < rows; ++r) {
        const int64_t on_void = h[r * num_labels + void_label];
        for (int64_t c = 0; c < num_labels; ++c) {
            const int64_t inter = h[r * num_labels + c];
            if (!valid_gt[c] || cats[r] != gc[c] || inter <= 0) continue;
            const double iou = static_cast<double>(inter) /
                               static_cast<double>(areas[r] + ga[c] - inter - on_void);
            if (iou > 0.5) {
                stats[cats[r] * 4 + 0] += 1.0;
                stats[cats[r] * 4 + 3] += iou;
                matched_row[r] = true;
                matched_gt[c] = true;
            }
        }
    }
    for (int64_t c = 0; c < num_labels; ++c)
        if (valid_gt[c] && !matched_gt[c]) stats[gc[c] * 4 + 2] += 1.0;
    // the crowd segment of each thing category (label index, 0: none)
    std::vector<int64_t> crowd_label(num_categories, 0);
    {
        std::vector<int64_t> crowd_labels;
        for (int64_t c = 0; c < num_labels; ++c)
            if (gcrowd[c]) crowd_labels.push_back(c);
        for (int64_t q = 0; q < n_crowd_classes && q < static_cast<int64_t>(crowd_labels.size());
             ++q)
            crowd_label[crowd_classes_data[q] + 1] = crowd_labels[q];
    }
    for (size_t r = 0; r < rows; ++r) {
        if (matched_row[r]) continue;
        int64_t ignored = h[r * num_labels + void_label];
        if (n_crowd_classes && cats[r] >= 0 && cats[r] < num_categories &&
            crowd_label[cats[r]] > 0)
            ignored += h[r * num_labels + crowd_label[cats[r]]];
        if (!(static_cast<double>(ignored) / static_cast<double>(areas[r]) > 0.5))
            stats[cats[r] * 4 + 1] += 1.0;
    }
}

void register_panoptic(py::module_& m) {
    m.def("gt_labels", &gt_labels, "The ground truth's panoptic label map and label areas.");
    m.def("pred_segments", &pred_segments, "Predicted panoptic segments, from scratch.");
    m.def("panoptic_stats", &panoptic_stats, "PQ statistics of one image.");
}

}  // namespace segcontrast
