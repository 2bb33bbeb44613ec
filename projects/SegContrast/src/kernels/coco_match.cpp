// COCO's per-image greedy matching (pycocotools' COCOeval.evaluateImg) of many groups at once.
//
// A group is one image and class: its detections in score order, its ground truth in
// annotation order and their (D, G) IoUs. Per area range and IoU threshold each detection in
// turn takes the still-free ground truth of highest IoU >= the threshold (the last of equal
// ones), ground truth that is not ignored before ignored; a crowd region is never used up.
#include "common.hpp"

namespace segcontrast {
namespace {

// (matched, matched_ignored), both (ND, A, T) bool: a detection has a match whose annotation id
// is not 0 (pycocotools reads id 0 as no match), and it matched an ignored ground truth.
py::tuple coco_match(const Int64Array& n_det, const Int64Array& n_gt, const Int64Array& det_start,
                     const Int64Array& gt_start, const Int64Array& iou_start,
                     const DoubleArray& ious, const py::array_t<bool, py::array::c_style>& gt_ignore,
                     const py::array_t<bool, py::array::c_style>& gt_crowd,
                     const py::array_t<bool, py::array::c_style>& gt_id_zero,
                     const DoubleArray& thresholds, int64_t total_dets) {
    const int64_t groups = n_det.size();
    const int64_t areas = gt_ignore.ndim() == 2 ? gt_ignore.shape(1) : 0;
    const int64_t t_count = thresholds.size();
    py::array_t<bool> matched({total_dets, areas, t_count});
    py::array_t<bool> matched_ignored({total_dets, areas, t_count});
    bool* m = matched.mutable_data();
    bool* mi = matched_ignored.mutable_data();
    std::fill(m, m + total_dets * areas * t_count, false);
    std::fill(mi, mi + total_dets * areas * t_count, false);
    const int64_t *nd = n_det.data(), *ng = n_gt.data(), *ds = det_start.data(),
                  *gs = gt_start.data(), *is = iou_start.data();
    const double* iou = ious.data();
    const bool* ignore = gt_ignore.data();
    const bool* crowd = gt_crowd.data();
    const bool* id_zero = gt_id_zero.data();
    const double* thr = thresholds.data();
    std::vector<uint8_t> taken;
    for (int64_t q = 0; q < groups; ++q) {
        const int64_t d_count = nd[q], g_count = ng[q];
        if (d_count == 0 || g_count == 0) continue;
        const double* block = iou + is[q];
        for (int64_t a = 0; a < areas; ++a) {
            for (int64_t t = 0; t < t_count; ++t) {
                taken.assign(static_cast<size_t>(g_count), 0);
                for (int64_t d = 0; d < d_count; ++d) {
                    int64_t best = -1;
                    double best_iou = 0.0;
                    // ground truth that is not ignored first, then the ignored
                    for (int pass = 0; pass < 2 && best < 0; ++pass) {
                        for (int64_t g = 0; g < g_count; ++g) {
                            const int64_t gi = gs[q] + g;
                            if (ignore[gi * areas + a] != (pass == 1) || taken[g]) continue;
                            const double v = block[d * g_count + g];
                            if (v >= thr[t] && (best < 0 || v >= best_iou)) {
                                best = g;
                                best_iou = v;
                            }
                        }
                    }
                    if (best < 0) continue;
                    const int64_t out = ((ds[q] + d) * areas + a) * t_count + t;
                    m[out] = !id_zero[gs[q] + best];
                    mi[out] = ignore[(gs[q] + best) * areas + a];
                    if (!crowd[gs[q] + best]) taken[best] = 1;
                }
            }
        }
    }
    return py::make_tuple(matched, matched_ignored);
}

}  // namespace

void register_coco_match(py::module_& m) {
    m.def("coco_match", &coco_match, "COCO's greedy matching of many (image, class) groups.");
}

}  // namespace segcontrast
