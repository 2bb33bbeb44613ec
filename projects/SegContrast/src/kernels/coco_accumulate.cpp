// COCO's accumulate step (pycocotools' COCOeval.accumulate) over detections already matched.
//
// Per class and area range: the detections in decreasing score order (equal scores in
// COCOeval's concatenation order, the keys), their running true and false positive counts,
// recall, and precision made non-increasing from the right and read at the recall thresholds.
// The arithmetic is numpy's, operation for operation (tp / (fp + tp + eps), tp / gt), so the
// numbers are the same to the last bit.
#include <cfloat>

#include "common.hpp"

namespace segcontrast {
namespace {

using BoolArray = py::array_t<bool, py::array::c_style | py::array::forcecast>;

// (precision (T, R, K, A), recall (T, K, A)); -1 where a class has no ground truth in a range.
py::tuple coco_accumulate(const Int64Array& classes, const DoubleArray& scores,
                          const Int64Array& keys, const BoolArray& tp, const BoolArray& fp,
                          const Int64Array& npig, const DoubleArray& recall_thresholds,
                          int64_t num_classes) {
    const int64_t d_count = classes.size();
    if (scores.size() != d_count || keys.size() != d_count)
        throw std::invalid_argument("classes, scores and keys must have one entry per detection");
    if (tp.ndim() != 3 || fp.ndim() != 3 || tp.shape(0) != d_count || fp.shape(0) != d_count ||
        tp.shape(1) != fp.shape(1) || tp.shape(2) != fp.shape(2))
        throw std::invalid_argument("tp and fp must both be (D, A, T)");
    const int64_t a_count = tp.shape(1), t_count = tp.shape(2);
    if (npig.ndim() != 2 || npig.shape(0) != num_classes || npig.shape(1) != a_count)
        throw std::invalid_argument("npig must be (K, A)");
    const int64_t r_count = recall_thresholds.size();
    py::array_t<double> precision({t_count, r_count, num_classes, a_count});
    py::array_t<double> recall({t_count, num_classes, a_count});
    double* prec = precision.mutable_data();
    double* rec = recall.mutable_data();
    std::fill(prec, prec + t_count * r_count * num_classes * a_count, -1.0);
    std::fill(rec, rec + t_count * num_classes * a_count, -1.0);

    const int64_t* cls = classes.data();
    const double* score = scores.data();
    const int64_t* key = keys.data();
    struct Entry {
        int64_t cls;
        double score;
        int64_t key, index;
    };
    std::vector<Entry> order(static_cast<size_t>(d_count));
    for (int64_t i = 0; i < d_count; ++i) order[static_cast<size_t>(i)] = {cls[i], score[i], key[i], i};
    // numpy's lexsort((keys, -scores, classes)) is stable: the index breaks the last ties
    std::sort(order.begin(), order.end(), [](const Entry& x, const Entry& y) {
        if (x.cls != y.cls) return x.cls < y.cls;
        if (x.score != y.score) return x.score > y.score;
        if (x.key != y.key) return x.key < y.key;
        return x.index < y.index;
    });
    const uint8_t* tpp = reinterpret_cast<const uint8_t*>(tp.data());  // bool: one byte, 0 or 1
    const uint8_t* fpp = reinterpret_cast<const uint8_t*>(fp.data());
    const int64_t* gt = npig.data();
    const double* thr = recall_thresholds.data();
    const double eps = DBL_EPSILON;  // np.spacing(1)
    // (T, nd) recall and precision of one class and area range
    std::vector<double> rc, pr;
    std::vector<int64_t> tps(static_cast<size_t>(t_count)), fps(static_cast<size_t>(t_count));
    // one class's (nd, A, T) flags in sorted order: each detection's rows are read from
    // scattered places once, not once per area range
    std::vector<uint8_t> tp_block, fp_block;
    const int64_t row = a_count * t_count;
    size_t lo = 0;
    for (int64_t k = 0; k < num_classes; ++k) {
        while (lo < order.size() && order[lo].cls < k) ++lo;
        size_t hi = lo;
        while (hi < order.size() && order[hi].cls == k) ++hi;
        const int64_t nd = static_cast<int64_t>(hi - lo);
        tp_block.resize(static_cast<size_t>(nd * row));
        fp_block.resize(static_cast<size_t>(nd * row));
        for (int64_t i = 0; i < nd; ++i) {
            const int64_t d = order[lo + static_cast<size_t>(i)].index;
            std::copy(tpp + d * row, tpp + (d + 1) * row, tp_block.begin() + i * row);
            std::copy(fpp + d * row, fpp + (d + 1) * row, fp_block.begin() + i * row);
        }
        for (int64_t a = 0; a < a_count; ++a) {
            const int64_t gt_count = gt[k * a_count + a];
            if (gt_count == 0) continue;
            if (nd == 0) {
                for (int64_t t = 0; t < t_count; ++t) {
                    rec[(t * num_classes + k) * a_count + a] = 0.0;
                    for (int64_t r = 0; r < r_count; ++r)
                        prec[((t * r_count + r) * num_classes + k) * a_count + a] = 0.0;
                }
                continue;
            }
            rc.resize(static_cast<size_t>(t_count * nd));
            pr.resize(static_cast<size_t>(t_count * nd));
            std::fill(tps.begin(), tps.end(), 0);
            std::fill(fps.begin(), fps.end(), 0);
            for (int64_t i = 0; i < nd; ++i) {
                const uint8_t* tp_row = tp_block.data() + i * row + a * t_count;
                const uint8_t* fp_row = fp_block.data() + i * row + a * t_count;
                for (int64_t t = 0; t < t_count; ++t) {
                    tps[static_cast<size_t>(t)] += tp_row[t];
                    fps[static_cast<size_t>(t)] += fp_row[t];
                    const double tp_sum = static_cast<double>(tps[static_cast<size_t>(t)]);
                    const double fp_sum = static_cast<double>(fps[static_cast<size_t>(t)]);
                    const size_t at = static_cast<size_t>(t * nd + i);
                    rc[at] = tp_sum / static_cast<double>(gt_count);
                    pr[at] = tp_sum / (fp_sum + tp_sum + eps);
                }
            }
            for (int64_t t = 0; t < t_count; ++t) {
                double* rc_t = rc.data() + t * nd;
                double* pr_t = pr.data() + t * nd;
                rec[(t * num_classes + k) * a_count + a] = rc_t[nd - 1];
                for (int64_t i = nd - 2; i >= 0; --i) pr_t[i] = std::max(pr_t[i], pr_t[i + 1]);
                for (int64_t r = 0; r < r_count; ++r) {
                    // np.searchsorted(rc, threshold, side="left")
                    const int64_t at = std::lower_bound(rc_t, rc_t + nd, thr[r]) - rc_t;
                    prec[((t * r_count + r) * num_classes + k) * a_count + a] =
                        at < nd ? pr_t[at] : 0.0;
                }
            }
        }
        lo = hi;
    }
    return py::make_tuple(precision, recall);
}

}  // namespace

void register_coco_accumulate(py::module_& m) {
    m.def("coco_accumulate", &coco_accumulate,
          "COCO's accumulate step: precision and recall per class and area range.");
}

}  // namespace segcontrast
