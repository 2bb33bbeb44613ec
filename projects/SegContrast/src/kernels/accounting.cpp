// The gap accounting's fixed variants of one image, scored in one call: what
// segcontrast.evaluation.accounting.image_variants.variant_stats computes for each variant, and
// account_image's packing of them (the fixes themselves are made in Python).
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "common.hpp"
#include "parts.hpp"

namespace segcontrast {
namespace {

using BoolArray = py::array_t<bool, py::array::c_style | py::array::forcecast>;

// The IoU of one mask with every annotation (pycocotools' rule: a crowd region's "IoU" is
// the intersection over the mask's area), as metrics.instance.iou_matrix computes it.
void iou_row(const Crop& mask, const Masks& gt, const bool* crowd, double* out) {
    for (size_t j = 0; j < gt.size(); ++j) {
        const int64_t inter = count_and(mask, gt[j]);
        const int64_t uni = crowd[j] ? mask.area : mask.area + gt[j].area - inter;
        out[j] = inter > 0 ? static_cast<double>(inter) / static_cast<double>(uni) : 0.0;
    }
}

// What stays the same for every variant of the image (ImageContext).
struct Image {
    Masks gt;
    const int64_t* gt_classes;  // (A,) every annotation's class
    const bool* crowd;          // (A,)
    int64_t a = 0;
    const int64_t* gt_areas = nullptr;  // (A,) as given
    const int64_t* regular;  // (G,)
    int64_t g = 0;
    const double* iou;  // (N, A) the original predictions'
    const double* gt_iou;  // (G,)
    const uint8_t* gt_labels;
    const uint8_t* painted;
    int64_t height = 0, width = 0;
    const int64_t* confusion = nullptr;  // (L, L) or none
    const double* pq = nullptr;          // (L, 4) or none
    GtSegments pan{};
    const int64_t* pan_categories = nullptr;
    const bool* pan_crowd = nullptr;
    const int64_t* crowd_classes = nullptr;
    int64_t n_crowd_classes = 0;
    // the kept predictions' own segments (pred_segments), reused by the variants, and their
    // boxes; none when keep is not increasing
    const bool* own_kept = nullptr;
    const int64_t* own_areas = nullptr;
    const int64_t* own_hist = nullptr;
    const int64_t* own_boxes = nullptr;
    const int64_t* keep;
    int64_t n_keep = 0;
    int64_t num_classes = 0;
    double score_threshold = 0, iou_threshold = 0, overlap_threshold = 0;
    // IoUs of each non-crowd object's own mask with every annotation (ListIou's gt rows),
    // made when a variant first needs them
    std::vector<std::vector<double>> gt_rows;

    const double* object_row(int64_t r) {
        if (gt_rows.empty()) gt_rows.resize(static_cast<size_t>(g));
        std::vector<double>& row = gt_rows[static_cast<size_t>(r)];
        if (row.empty() && a) {
            row.resize(static_cast<size_t>(a));
            iou_row(gt[static_cast<size_t>(regular[r])], gt, crowd, row.data());
        }
        return row.data();
    }
};

// What account_image keeps of all the variants.
struct Packed {
    std::vector<int64_t> iou_variants;
    std::vector<double> gt_ious;
    std::vector<int32_t> pq_rows;
    std::vector<double> pq_iou;
    std::vector<int64_t> ap_groups;  // row, class, detections, ground truth
    std::vector<double> ap_dets, ap_ious;
    py::list confusions;
};

template <typename T>
const T* data_of(const py::array& a) {
    return static_cast<const T*>(a.data());
}

// The PQ statistics of the variant's kept entries (image_variants._panoptic); source: each
// entry's original prediction (-1: none), whose own segment it reuses where nothing above it
// changed.
void panoptic(const Image& im, const std::vector<Crop>& masks, const double* scores,
              const int64_t* classes, const int64_t* gt_copy, const int64_t* source,
              double* stats) {
    const size_t n = masks.size();
    std::unique_ptr<PriorSegments> prior;
    std::vector<int64_t> position(n, -1);
    if (im.own_kept) {
        std::vector<bool> present(static_cast<size_t>(im.n_keep), false);
        for (size_t i = 0; i < n; ++i) {
            const int64_t* at = std::lower_bound(im.keep, im.keep + im.n_keep, source[i]);
            if (source[i] < 0 || at == im.keep + im.n_keep || *at != source[i]) continue;
            position[i] = at - im.keep;
            present[static_cast<size_t>(position[i])] = true;
        }
        prior.reset(new PriorSegments{position.data(), im.own_kept, im.own_areas, im.own_hist,
                                      {}});
        for (int64_t p = 0; p < im.n_keep; ++p)
            if (im.own_kept[p] && !present[static_cast<size_t>(p)]) {
                const int64_t* b = im.own_boxes + 4 * p;
                prior->changed.push_back({b[0], b[1], b[2], b[3]});
            }
    }
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
    std::unique_ptr<bool[]> kept(new bool[n]);
    std::vector<int64_t> areas(n), hist(n * static_cast<size_t>(im.pan.num_labels));
    segments_into(masks, order.data(), n, im.pan, im.overlap_threshold, nullptr, gt_copy,
                  kept.get(), areas.data(), hist.data(), prior.get());
    std::vector<int64_t> categories(n);
    for (size_t i = 0; i < n; ++i) categories[i] = classes[i] + 1;
    stats_into(categories.data(), kept.get(), areas.data(), hist.data(),
               static_cast<int64_t>(n), im.pan.areas, im.pan_categories, im.pan_crowd,
               im.pan.num_labels, im.crowd_classes, im.n_crowd_classes, im.num_classes + 1,
               im.pan.height * im.pan.width, stats);
}

// One variant (a fixed prediction list): variant_stats, then account_image's packing.
void score_variant(Image& im, const py::tuple& spec, Packed& out) {
    const int64_t row = spec[0].cast<int64_t>();
    const bool exact_copies = spec[1].cast<bool>();
    Masks masks(spec[2], spec[3], spec[4]);
    const Int64Array classes_a = Int64Array::ensure(spec[5]);
    const DoubleArray scores_a = DoubleArray::ensure(spec[6]);
    const DoubleArray ap_areas_a = DoubleArray::ensure(spec[7]);
    const Int64Array source_a = Int64Array::ensure(spec[8]);
    const Int64Array mask_source_a = Int64Array::ensure(spec[9]);
    const Int64Array gt_copy_a = Int64Array::ensure(spec[10]);
    const Int64Array touched_a = Int64Array::ensure(spec[11]);
    const Int64Array touched_boxes_a = Int64Array::ensure(spec[12]);
    const int64_t m = static_cast<int64_t>(masks.size());
    if (classes_a.size() != m || scores_a.size() != m || ap_areas_a.size() != m ||
        source_a.size() != m || mask_source_a.size() != m || gt_copy_a.size() != m ||
        touched_boxes_a.size() % 4 != 0)
        throw std::invalid_argument("a variant's arrays must be (M,) for M masks");
    const int64_t *classes = classes_a.data(), *source = source_a.data(),
                  *mask_source = mask_source_a.data(), *gt_copy = gt_copy_a.data();
    const double *scores = scores_a.data(), *ap_areas = ap_areas_a.data();
    const int64_t num_labels = im.num_classes + 1;

    // the list's IoUs with all annotations (fixes.ListIou): an original prediction's mask or
    // an object's mask reuses its row, other masks are intersected
    std::vector<double> iou(static_cast<size_t>(m * im.a));
    for (int64_t e = 0; e < m; ++e) {
        double* dst = iou.data() + e * im.a;
        if (gt_copy[e] >= 0) {
            if (gt_copy[e] >= im.g) throw std::invalid_argument("gt_copy outside the objects");
            std::copy_n(im.object_row(gt_copy[e]), im.a, dst);
        } else if (mask_source[e] >= 0) {
            std::copy_n(im.iou + mask_source[e] * im.a, im.a, dst);
        } else if (im.a) {
            iou_row(masks[static_cast<size_t>(e)], im.gt, im.crowd, dst);
        }
    }
    const std::vector<int64_t> touched(touched_a.data(), touched_a.data() + touched_a.size());
    std::vector<int64_t> groups;
    ap_patch_into(m, classes, scores, ap_areas,
                  [&](int64_t i) { return iou.data() + i * im.a; }, im.gt_classes, im.a,
                  touched, groups, out.ap_dets, out.ap_ious);
    for (size_t q = 0; q + 2 < groups.size(); q += 3)
        out.ap_groups.insert(out.ap_groups.end(), {row, groups[q], groups[q + 1], groups[q + 2]});

    std::vector<int64_t> kept;
    for (int64_t e = 0; e < m; ++e)
        if (scores[e] >= im.score_threshold) kept.push_back(e);
    const int64_t k = static_cast<int64_t>(kept.size());
    bool own = k == im.n_keep;
    for (int64_t p = 0; own && p < k; ++p) own = source[kept[p]] == im.keep[p];
    if (own) return;  // only AP can change

    std::vector<Crop> kept_masks(static_cast<size_t>(k));
    std::vector<int64_t> kept_classes(k), kept_copy(k), kept_source(k);
    std::vector<double> kept_scores(k);
    for (int64_t p = 0; p < k; ++p) {
        kept_masks[p] = masks[static_cast<size_t>(kept[p])];
        kept_classes[p] = classes[kept[p]];
        kept_scores[p] = scores[kept[p]];
        kept_copy[p] = gt_copy[kept[p]];
        kept_source[p] = source[kept[p]];
    }
    std::vector<double> gt_iou(im.gt_iou, im.gt_iou + im.g);
    Int64Array confusion({num_labels, num_labels});
    int64_t* counts = confusion.mutable_data();
    std::fill(counts, counts + num_labels * num_labels, 0);
    if (exact_copies && im.confusion && k == m) {
        for (int64_t r = 0; r < im.g; ++r) gt_iou[r] = im.gt_areas[im.regular[r]] > 0 ? 1.0 : 0.0;
        for (int64_t i = 0; i < num_labels; ++i) {
            int64_t total = 0;
            const int64_t* was = im.confusion + i * num_labels;
            for (int64_t j = 0; j < num_labels; ++j) total += was[j];
            for (int64_t j = 0; j < num_labels; ++j)
                counts[i * num_labels + j] = (i == j ? total : 0) - was[j];
        }
    } else {
        // matching is per class: only the touched classes can change
        std::vector<bool> is_touched(static_cast<size_t>(im.num_classes), false);
        for (const int64_t c : touched)
            if (c >= 0 && c < im.num_classes) is_touched[c] = true;
        auto touched_class = [&](int64_t c) {
            return c >= 0 && c < im.num_classes && is_touched[c];
        };
        std::vector<int64_t> gi, pi, gi_classes, pi_classes;
        for (int64_t r = 0; r < im.g; ++r) {
            const int64_t c = im.gt_classes[im.regular[r]];
            if (touched_class(c)) {
                gi.push_back(r);
                gi_classes.push_back(c);
            }
        }
        for (int64_t p = 0; p < k; ++p)
            if (touched_class(kept_classes[p])) {
                pi.push_back(p);
                pi_classes.push_back(kept_classes[p]);
            }
        const int64_t np_ = static_cast<int64_t>(pi.size()), ng = static_cast<int64_t>(gi.size());
        std::vector<double> pair(static_cast<size_t>(np_ * ng));
        for (int64_t x = 0; x < np_; ++x)
            for (int64_t y = 0; y < ng; ++y)
                pair[x * ng + y] = iou[kept[pi[x]] * im.a + im.regular[gi[y]]];
        std::vector<int64_t> rows, cols;
        class_match_pairs(pair.data(), np_, ng, pi_classes.data(), gi_classes.data(),
                          im.iou_threshold, rows, cols);
        for (const int64_t r : gi) gt_iou[r] = 0.0;
        for (size_t q = 0; q < rows.size(); ++q) gt_iou[gi[cols[q]]] = pair[rows[q] * ng + cols[q]];
        // the painted confusion's change: repaint only windows around the touched masks
        std::vector<uint8_t> values(k);
        for (int64_t p = 0; p < k; ++p) values[p] = static_cast<uint8_t>(kept_classes[p] + 1);
        std::vector<int64_t> order(k);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t x, int64_t y) { return kept_scores[x] < kept_scores[y]; });
        const int64_t* tb = touched_boxes_a.data();
        std::vector<Box> boxes;
        for (py::ssize_t q = 0; q < touched_boxes_a.size() / 4; ++q)
            boxes.push_back({tb[4 * q], tb[4 * q + 1], tb[4 * q + 2], tb[4 * q + 3]});
        window_delta(im.gt_labels, im.painted, im.width, kept_masks, values.data(), order.data(),
                     static_cast<size_t>(k), boxes, num_labels, counts);
    }
    if (std::any_of(counts, counts + num_labels * num_labels, [](int64_t v) { return v != 0; }))
        out.confusions.append(py::make_tuple(row, confusion));
    if (!std::equal(gt_iou.begin(), gt_iou.end(), im.gt_iou)) {
        out.iou_variants.push_back(row);
        out.gt_ious.insert(out.gt_ious.end(), gt_iou.begin(), gt_iou.end());
    }
    if (im.pq) {
        std::vector<double> stats(static_cast<size_t>(num_labels * 4));
        panoptic(im, kept_masks, kept_scores.data(), kept_classes.data(), kept_copy.data(),
                 kept_source.data(), stats.data());
        for (int64_t c = 0; c < num_labels; ++c) {
            const double* s = stats.data() + c * 4;
            const double* was = im.pq + c * 4;
            if (s[0] == was[0] && s[1] == was[1] && s[2] == was[2] && s[3] == was[3]) continue;
            out.pq_rows.insert(out.pq_rows.end(),
                               {static_cast<int32_t>(row), static_cast<int32_t>(c),
                                static_cast<int32_t>(s[0]), static_cast<int32_t>(s[1]),
                                static_cast<int32_t>(s[2])});
            out.pq_iou.push_back(s[3]);
        }
    }
}

template <typename T, typename V>
py::array_t<T> to_array(const std::vector<V>& values, py::ssize_t columns) {
    const auto rows = static_cast<py::ssize_t>(values.size()) / columns;
    py::array_t<T> out = columns == 1 ? py::array_t<T>({rows}) : py::array_t<T>({rows, columns});
    std::transform(values.begin(), values.end(), out.mutable_data(),
                   [](V v) { return static_cast<T>(v); });
    return out;
}

// Every variant of one image (image_variants.account_image, after the fixes are made).
// pan: None or (labels, categories, crowd, areas, crowd_classes) of the ground-truth segments
// (with pq), optionally followed by (kept, areas, hist, boxes) of the kept predictions' own
// segments (pred_segments) and boxes; variants: (row, exact_copies, boxes, crops, areas,
// classes, scores, ap_areas, source, mask_source, gt_copy, touched_classes, touched_boxes) per
// variant.
py::tuple account_variants(const py::handle& gt_boxes, const py::handle& gt_crops,
                           const py::handle& gt_areas, const Int64Array& gt_classes,
                           const BoolArray& crowd, const Int64Array& regular,
                           const DoubleArray& iou, const DoubleArray& gt_iou,
                           const ByteArray& gt_labels, const ByteArray& painted,
                           const py::object& confusion, const py::object& pan,
                           const py::object& pq, const Int64Array& keep, int64_t num_classes,
                           double score_threshold, double iou_threshold,
                           double overlap_threshold, const py::list& variants) {
    Image im{Masks(gt_boxes, gt_crops, gt_areas)};
    const Int64Array gt_areas_a = Int64Array::ensure(gt_areas);
    im.gt_areas = gt_areas_a.data();
    im.a = static_cast<int64_t>(im.gt.size());
    im.g = regular.size();
    if (gt_classes.size() != im.a || crowd.size() != im.a || gt_iou.size() != im.g)
        throw std::invalid_argument("annotation arrays of different lengths");
    if (iou.size() && (iou.ndim() != 2 || iou.shape(1) != im.a))
        throw std::invalid_argument("iou must be (N, A)");
    if (gt_labels.ndim() != 2 || painted.ndim() != 2 || painted.shape(0) != gt_labels.shape(0) ||
        painted.shape(1) != gt_labels.shape(1))
        throw std::invalid_argument("gt_labels and painted must be (H, W)");
    im.gt_classes = gt_classes.data();
    im.crowd = crowd.data();
    im.regular = regular.data();
    for (int64_t r = 0; r < im.g; ++r)
        if (im.regular[r] < 0 || im.regular[r] >= im.a)
            throw std::invalid_argument("regular outside the annotations");
    im.iou = iou.data();
    im.gt_iou = gt_iou.data();
    im.gt_labels = gt_labels.data();
    im.painted = painted.data();
    im.height = gt_labels.shape(0);
    im.width = gt_labels.shape(1);
    im.keep = keep.data();
    im.n_keep = keep.size();
    im.num_classes = num_classes;
    im.score_threshold = score_threshold;
    im.iou_threshold = iou_threshold;
    im.overlap_threshold = overlap_threshold;
    const int64_t num_labels = num_classes + 1;
    Int64Array confusion_a;
    if (!confusion.is_none()) {
        confusion_a = Int64Array::ensure(confusion);
        if (confusion_a.size() != num_labels * num_labels)
            throw std::invalid_argument("confusion must be (K + 1, K + 1)");
        im.confusion = confusion_a.data();
    }
    DoubleArray pq_a;
    py::array pan_labels;
    Int64Array pan_categories, pan_areas, crowd_classes, own_areas, own_hist, own_boxes;
    BoolArray pan_crowd, own_kept;
    if (!pan.is_none() && !pq.is_none()) {
        pq_a = DoubleArray::ensure(pq);
        if (pq_a.size() != num_labels * 4) throw std::invalid_argument("pq must be (K + 1, 4)");
        im.pq = pq_a.data();
        const py::tuple p = pan.cast<py::tuple>();
        const py::array labels = p[0].cast<py::array>();
        const bool wide = !py::isinstance<py::array_t<uint16_t>>(labels);
        using WideLabels = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
        if (wide)
            pan_labels = WideLabels::ensure(labels);
        else
            pan_labels = py::array_t<uint16_t, py::array::c_style>::ensure(labels);
        if (pan_labels.ndim() != 2 || pan_labels.shape(0) != im.height ||
            pan_labels.shape(1) != im.width)
            throw std::invalid_argument("panoptic labels must be (H, W)");
        pan_categories = Int64Array::ensure(p[1]);
        pan_crowd = BoolArray::ensure(p[2]);
        pan_areas = Int64Array::ensure(p[3]);
        crowd_classes = Int64Array::ensure(p[4]);
        const int64_t labels_count = pan_areas.size();
        if (pan_categories.size() != labels_count || pan_crowd.size() != labels_count ||
            labels_count < im.g + 2)
            throw std::invalid_argument("panoptic segments of different lengths");
        im.pan = GtSegments{pan_labels.data(), wide, im.height, im.width, labels_count,
                            pan_areas.data()};
        im.pan_categories = pan_categories.data();
        im.pan_crowd = pan_crowd.data();
        im.crowd_classes = crowd_classes.data();
        im.n_crowd_classes = crowd_classes.size();
        if (p.size() > 5) {
            own_kept = BoolArray::ensure(p[5]);
            own_areas = Int64Array::ensure(p[6]);
            own_hist = Int64Array::ensure(p[7]);
            own_boxes = Int64Array::ensure(p[8]);
            if (own_kept.size() != im.n_keep || own_areas.size() != im.n_keep ||
                own_hist.size() != im.n_keep * labels_count || own_boxes.size() != im.n_keep * 4)
                throw std::invalid_argument("the kept predictions' segments must be (N,)");
            // reused only as the variants rank them: keep increasing (list order)
            if (std::adjacent_find(im.keep, im.keep + im.n_keep, [](int64_t x, int64_t y) {
                    return x >= y;
                }) == im.keep + im.n_keep) {
                im.own_kept = own_kept.data();
                im.own_areas = own_areas.data();
                im.own_hist = own_hist.data();
                im.own_boxes = own_boxes.data();
            }
        }
    }
    Packed out;
    for (const py::handle& spec : variants) score_variant(im, spec.cast<py::tuple>(), out);
    return py::make_tuple(
        to_array<int8_t>(out.iou_variants, 1),
        DoubleArray(std::vector<py::ssize_t>{static_cast<py::ssize_t>(out.iou_variants.size()),
                                              static_cast<py::ssize_t>(im.g)},
                    out.gt_ious.data()),
        to_array<int32_t>(out.pq_rows, 5), to_array<double>(out.pq_iou, 1),
        to_array<int32_t>(out.ap_groups, 4), to_array<double>(out.ap_dets, 2),
        to_array<double>(out.ap_ious, 1), out.confusions);
}

}  // namespace

void register_accounting(py::module_& m) {
    m.def("account_variants", &account_variants,
          "The gap accounting's fixed variants of one image, scored and packed.");
}

}  // namespace segcontrast
