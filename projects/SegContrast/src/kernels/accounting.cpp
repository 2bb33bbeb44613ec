// The gap accounting of one image in one call (image_variants.account_image): each fixed
// variant made from the error assignment (fixes.cpp), rescored (what the tests' reference
// per_variant_impl.variant_stats computes for it), and all of them packed.
#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "common.hpp"
#include "fixes.hpp"
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
    py::dict confusions;  // row -> the painted confusion's change (rows that change it)
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
void score_variant(Image& im, const Variant& v, Packed& out) {
    const int64_t row = v.row;
    const int64_t m = static_cast<int64_t>(v.masks.size());
    const int64_t *classes = v.classes.data(), *source = v.source.data(),
                  *mask_source = v.mask_source.data(), *gt_copy = v.gt_copy.data();
    const double *scores = v.scores.data(), *ap_areas = v.ap_areas.data();
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
            iou_row(v.masks[static_cast<size_t>(e)], im.gt, im.crowd, dst);
        }
    }
    const std::vector<int64_t>& touched = v.touched;
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
        kept_masks[p] = v.masks[static_cast<size_t>(kept[p])];
        kept_classes[p] = classes[kept[p]];
        kept_scores[p] = scores[kept[p]];
        kept_copy[p] = gt_copy[kept[p]];
        kept_source[p] = source[kept[p]];
    }
    std::vector<double> gt_iou(im.gt_iou, im.gt_iou + im.g);
    Int64Array confusion({num_labels, num_labels});
    int64_t* counts = confusion.mutable_data();
    std::fill(counts, counts + num_labels * num_labels, 0);
    if (v.exact_copies && im.confusion && k == m) {
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
        window_delta(im.gt_labels, im.painted, im.width, kept_masks, values.data(), order.data(),
                     static_cast<size_t>(k), v.touched_boxes, num_labels, counts);
    }
    if (std::any_of(counts, counts + num_labels * num_labels, [](int64_t v) { return v != 0; }))
        out.confusions[py::int_(row)] = confusion;
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

// One image's arrays as an Image borrows them (ImageContext), kept alive while it is used.
struct ImageInput {
    Int64Array gt_areas_a, confusion_a, pan_categories, pan_areas, crowd_classes, own_areas,
        own_hist, own_boxes;
    BoolArray pan_crowd, own_kept;
    DoubleArray pq_a;
    py::array pan_labels;
    Image im;

    // pan: None or (labels, categories, crowd, areas, crowd_classes) of the ground-truth
    // segments (with pq), optionally followed by (kept, areas, hist, boxes) of the kept
    // predictions' own segments (pred_segments) and boxes.
    ImageInput(const py::handle& gt_boxes, const py::handle& gt_crops, const py::handle& gt_areas,
               const Int64Array& gt_classes, const BoolArray& crowd, const Int64Array& regular,
               const DoubleArray& iou, const DoubleArray& gt_iou, const ByteArray& gt_labels,
               const ByteArray& painted, const py::object& confusion, const py::object& pan,
               const py::object& pq, const Int64Array& keep, int64_t num_classes,
               double score_threshold, double iou_threshold, double overlap_threshold)
        : im{Masks(gt_boxes, gt_crops, gt_areas)} {
        gt_areas_a = Int64Array::ensure(gt_areas);
        im.gt_areas = gt_areas_a.data();
        im.a = static_cast<int64_t>(im.gt.size());
        im.g = regular.size();
        if (gt_classes.size() != im.a || crowd.size() != im.a || gt_iou.size() != im.g)
            throw std::invalid_argument("annotation arrays of different lengths");
        if (iou.size() && (iou.ndim() != 2 || iou.shape(1) != im.a))
            throw std::invalid_argument("iou must be (N, A)");
        if (gt_labels.ndim() != 2 || painted.ndim() != 2 ||
            painted.shape(0) != gt_labels.shape(0) || painted.shape(1) != gt_labels.shape(1))
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
        if (!confusion.is_none()) {
            confusion_a = Int64Array::ensure(confusion);
            if (confusion_a.size() != num_labels * num_labels)
                throw std::invalid_argument("confusion must be (K + 1, K + 1)");
            im.confusion = confusion_a.data();
        }
        if (pan.is_none() || pq.is_none()) return;
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
        if (p.size() <= 5) return;
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
};

py::tuple packed(const Packed& out, int64_t g) {
    return py::make_tuple(
        to_array<int8_t>(out.iou_variants, 1),
        DoubleArray(std::vector<py::ssize_t>{static_cast<py::ssize_t>(out.iou_variants.size()),
                                              static_cast<py::ssize_t>(g)},
                    out.gt_ious.data()),
        to_array<int32_t>(out.pq_rows, 5), to_array<double>(out.pq_iou, 1),
        to_array<int32_t>(out.ap_groups, 4), to_array<double>(out.ap_dets, 2),
        to_array<double>(out.ap_ious, 1), out.confusions);
}

// A fixed list made in Python, as score_variant reads it; its masks are borrowed from `held`.
void read_variant(const py::tuple& spec, std::unique_ptr<Masks>& held, Variant& v) {
    if (spec.size() != 13) throw std::invalid_argument("a variant is a tuple of 13 items");
    v.row = spec[0].cast<int64_t>();
    v.exact_copies = spec[1].cast<bool>();
    held.reset(new Masks(spec[2], spec[3], spec[4]));
    v.masks = held->items();
    const auto m = static_cast<py::ssize_t>(v.masks.size());
    const auto ints = [m](const py::handle& h, std::vector<int64_t>& to) {
        const Int64Array a = Int64Array::ensure(h);
        if (!a || a.size() != m)
            throw std::invalid_argument("a variant's arrays must be (M,) for M masks");
        to.assign(a.data(), a.data() + m);
    };
    const auto floats = [m](const py::handle& h, std::vector<double>& to) {
        const DoubleArray a = DoubleArray::ensure(h);
        if (!a || a.size() != m)
            throw std::invalid_argument("a variant's arrays must be (M,) for M masks");
        to.assign(a.data(), a.data() + m);
    };
    ints(spec[5], v.classes);
    floats(spec[6], v.scores);
    floats(spec[7], v.ap_areas);
    ints(spec[8], v.source);
    ints(spec[9], v.mask_source);
    ints(spec[10], v.gt_copy);
    const Int64Array touched = Int64Array::ensure(spec[11]);
    const Int64Array boxes = Int64Array::ensure(spec[12]);
    if (!touched || !boxes || boxes.size() % 4 != 0)
        throw std::invalid_argument("touched boxes must be (B, 4)");
    v.touched.assign(touched.data(), touched.data() + touched.size());
    v.touched_boxes.clear();
    const int64_t* b = boxes.data();
    for (py::ssize_t q = 0; q < boxes.size() / 4; ++q)
        v.touched_boxes.push_back({b[4 * q], b[4 * q + 1], b[4 * q + 2], b[4 * q + 3]});
}

// Fixed lists made elsewhere (fixes.py, the tests' reference), scored: variants are
// (row, exact_copies, boxes, crops, areas, classes, scores, ap_areas, source, mask_source,
// gt_copy, touched_classes, touched_boxes), touched_classes increasing and distinct.
py::tuple account_variants(const py::handle& gt_boxes, const py::handle& gt_crops,
                           const py::handle& gt_areas, const Int64Array& gt_classes,
                           const BoolArray& crowd, const Int64Array& regular,
                           const DoubleArray& iou, const DoubleArray& gt_iou,
                           const ByteArray& gt_labels, const ByteArray& painted,
                           const py::object& confusion, const py::object& pan,
                           const py::object& pq, const Int64Array& keep, int64_t num_classes,
                           double score_threshold, double iou_threshold,
                           double overlap_threshold, const py::list& variants) {
    ImageInput input(gt_boxes, gt_crops, gt_areas, gt_classes, crowd, regular, iou, gt_iou,
                     gt_labels, painted, confusion, pan, pq, keep, num_classes, score_threshold,
                     iou_threshold, overlap_threshold);
    Packed out;
    Variant v;
    std::unique_ptr<Masks> held;
    for (const py::handle& spec : variants) {
        read_variant(spec.cast<py::tuple>(), held, v);
        score_variant(input.im, v, out);
    }
    return packed(out, input.im.g);
}

// The error assignment's arrays, checked against the image's sizes (an index outside its
// range would be read out of bounds by the fixes).
struct ErrorInput {
    Int64Array counts, pred_type, pred_target, pred_match, split_objects;
    BoolArray fix_removes, gt_missed;
    std::vector<Int64Array> held;  // the ragged lists' arrays

    Span span(const py::handle& h, int64_t bound, const char* what) {
        held.push_back(Int64Array::ensure(h));
        const Int64Array& a = held.back();
        if (!a) throw std::invalid_argument(what);
        for (py::ssize_t q = 0; q < a.size(); ++q)
            if (a.data()[q] < 0 || a.data()[q] >= bound) throw std::invalid_argument(what);
        return Span{a.data(), a.size()};
    }

    ErrorInput(const py::tuple& e, FixInputs& in) {
        if (e.size() != 9) throw std::invalid_argument("errors: 9 items");
        const int64_t n = in.n_keep, g = static_cast<int64_t>(in.objects.size());
        counts = Int64Array::ensure(e[0]);
        pred_type = Int64Array::ensure(e[1]);
        pred_target = Int64Array::ensure(e[2]);
        fix_removes = BoolArray::ensure(e[3]);
        split_objects = Int64Array::ensure(e[5]);
        gt_missed = BoolArray::ensure(e[7]);
        pred_match = Int64Array::ensure(e[8]);
        if (!counts || !pred_type || !pred_target || !fix_removes || !split_objects ||
            !gt_missed || !pred_match || counts.size() != kAll || pred_type.size() != n ||
            pred_target.size() != n || fix_removes.size() != n || pred_match.size() != n ||
            gt_missed.size() != g)
            throw std::invalid_argument("errors: arrays of the wrong lengths");
        in.pred_type = pred_type.data();
        in.pred_target = pred_target.data();
        in.fix_removes = fix_removes.data();
        in.pred_match = pred_match.data();
        in.gt_missed = gt_missed.data();
        for (int64_t k = 0; k < n; ++k) {
            const int64_t t = in.pred_type[k];
            const bool aims = (t == kConfusion || t == kLocalisation || t == kMaskQuality) &&
                              !in.fix_removes[k];
            if ((aims && (in.pred_target[k] < 0 || in.pred_target[k] >= g)) ||
                in.pred_match[k] >= g)
                throw std::invalid_argument("errors: an object index outside the objects");
        }
        const py::sequence merged = e[4].cast<py::sequence>();
        if (static_cast<int64_t>(merged.size()) != n)
            throw std::invalid_argument("errors: merged_objects must have N items");
        in.merged_objects.assign(static_cast<size_t>(n), Span{});
        for (int64_t k = 0; k < n; ++k)
            if (in.pred_type[k] == kMerged)
                in.merged_objects[static_cast<size_t>(k)] =
                    span(merged[static_cast<size_t>(k)], g, "errors: a merged object outside");
        const py::sequence pieces = e[6].cast<py::sequence>();
        if (static_cast<py::ssize_t>(pieces.size()) != split_objects.size())
            throw std::invalid_argument("errors: split_pieces must have S items");
        in.split_objects.assign(split_objects.data(), split_objects.data() + split_objects.size());
        for (const int64_t j : in.split_objects)
            if (j < 0 || j >= g) throw std::invalid_argument("errors: a split object outside");
        in.split_pieces.clear();
        for (const py::handle& h : pieces) {
            in.split_pieces.push_back(span(h, n, "errors: a split piece outside the kept"));
            if (in.split_pieces.back().size == 0)
                throw std::invalid_argument("errors: a split object without pieces");
        }
    }
};

// Every variant of one image whose error occurs in it, made and scored
// (image_variants.account_image): pred is (boxes, crops, areas, classes, scores, ap_areas) of
// all the predictions; errors (counts, pred_type, pred_target, pred_fix_removes,
// merged_objects, split_objects, split_pieces, gt_missed, pred_match) its ErrorAssignment.
// Returns the variants (rows), then account_variants' packing.
py::tuple account_fixes(const py::handle& gt_boxes, const py::handle& gt_crops,
                        const py::handle& gt_areas, const Int64Array& gt_classes,
                        const BoolArray& crowd, const Int64Array& regular,
                        const DoubleArray& iou, const DoubleArray& gt_iou,
                        const ByteArray& gt_labels, const ByteArray& painted,
                        const py::object& confusion, const py::object& pan,
                        const py::object& pq, const Int64Array& keep, int64_t num_classes,
                        double score_threshold, double iou_threshold, double overlap_threshold,
                        const py::tuple& pred, const py::tuple& errors) {
    ImageInput input(gt_boxes, gt_crops, gt_areas, gt_classes, crowd, regular, iou, gt_iou,
                     gt_labels, painted, confusion, pan, pq, keep, num_classes, score_threshold,
                     iou_threshold, overlap_threshold);
    Image& im = input.im;
    if (pred.size() != 6) throw std::invalid_argument("pred: 6 items");
    const Masks pred_masks(pred[0], pred[1], pred[2]);
    const Int64Array pred_areas = Int64Array::ensure(pred[2]);
    const Int64Array pred_classes = Int64Array::ensure(pred[3]);
    const DoubleArray pred_scores = DoubleArray::ensure(pred[4]);
    const DoubleArray pred_ap_areas = DoubleArray::ensure(pred[5]);
    const auto m = static_cast<int64_t>(pred_masks.size());
    if (!pred_classes || !pred_scores || !pred_ap_areas || pred_classes.size() != m ||
        pred_scores.size() != m || pred_ap_areas.size() != m)
        throw std::invalid_argument("pred: arrays must be (M,) for M masks");
    for (int64_t k = 0; k < im.n_keep; ++k)
        if (im.keep[k] < 0 || im.keep[k] >= m)
            throw std::invalid_argument("keep outside the predictions");
    // the original predictions' IoU rows are reused by the entries that keep their masks
    if (m && im.a && (iou.ndim() != 2 || iou.shape(0) != m))
        throw std::invalid_argument("iou must be (M, A)");
    FixInputs in;
    in.pred = &pred_masks.items();
    in.pred_areas = pred_areas.data();
    in.pred_classes = pred_classes.data();
    in.pred_scores = pred_scores.data();
    in.pred_ap_areas = pred_ap_areas.data();
    in.m = m;
    in.keep = im.keep;
    in.n_keep = im.n_keep;
    for (int64_t r = 0; r < im.g; ++r) {
        const int64_t a = im.regular[r];
        in.objects.push_back(im.gt[static_cast<size_t>(a)]);
        in.object_areas.push_back(im.gt_areas[a]);
        in.object_classes.push_back(im.gt_classes[a]);
    }
    const ErrorInput error_input(errors, in);
    std::vector<int64_t> rows;
    for (int64_t r = 0; r < kAll; ++r)
        if (error_input.counts.data()[r] > 0) rows.push_back(r);
    if (!rows.empty()) rows.push_back(kAll);
    Packed out;
    Variant v;
    for (const int64_t row : rows) {
        if (row == kLowScore)
            low_score_variant(in, v);
        else if (row == kAll)
            fix_all(in, v);
        else
            fix_one(in, row, v);
        score_variant(im, v, out);
    }
    py::tuple scored = packed(out, im.g);
    py::list result;
    result.append(to_array<int8_t>(rows, 1));
    for (const py::handle& item : scored) result.append(item);
    return py::tuple(result);
}

}  // namespace

void register_accounting(py::module_& m) {
    m.def("account_fixes", &account_fixes,
          "The gap accounting of one image: its fixed variants made, scored and packed.");
    m.def("account_variants", &account_variants,
          "Fixed variants of one image made elsewhere, scored and packed.");
}

}  // namespace segcontrast
