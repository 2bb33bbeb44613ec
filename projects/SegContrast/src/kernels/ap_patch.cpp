// The COCO AP records of some classes of one image's predictions, grouped as
// segcontrast.evaluation.metrics.coco_ap.ApImage.build groups them.
#include <algorithm>
#include <numeric>

#include "common.hpp"

namespace segcontrast {
namespace {

constexpr int64_t kMaxDets = 100;

// (groups (T, 3) class, detections, ground truth; dets (D, 2) score, area; ious): per touched
// class its detections by decreasing score (ties in list order), at most 100, and their IoUs
// with the class's annotations (annotation order), flattened.
py::tuple ap_patch(const Int64Array& classes, const DoubleArray& scores,
                   const DoubleArray& ap_areas, const DoubleArray& iou,
                   const Int64Array& gt_classes, const Int64Array& touched) {
    const int64_t n = classes.size(), a = gt_classes.size(), t = touched.size();
    if (n && a && (iou.ndim() != 2 || iou.shape(0) != n || iou.shape(1) != a))
        throw std::invalid_argument("iou must be (N, A)");
    const int64_t* c = classes.data();
    const double* s = scores.data();
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
        return c[x] < c[y] || (c[x] == c[y] && s[x] > s[y]);
    });
    Int64Array groups({t, int64_t{3}});
    int64_t* gp = groups.mutable_data();
    std::vector<int64_t> dets;
    std::vector<double> ious;
    const double* w = iou.data();
    const int64_t* gcls = gt_classes.data();
    for (int64_t k = 0; k < t; ++k) {
        const int64_t cls = touched.data()[k];
        auto lo = std::lower_bound(order.begin(), order.end(), cls,
                                   [&](int64_t i, int64_t v) { return c[i] < v; });
        auto hi = std::upper_bound(order.begin(), order.end(), cls,
                                   [&](int64_t v, int64_t i) { return v < c[i]; });
        if (hi - lo > kMaxDets) hi = lo + kMaxDets;
        std::vector<int64_t> gi;
        for (int64_t j = 0; j < a; ++j)
            if (gcls[j] == cls) gi.push_back(j);
        gp[3 * k] = cls;
        gp[3 * k + 1] = hi - lo;
        gp[3 * k + 2] = static_cast<int64_t>(gi.size());
        for (auto it = lo; it != hi; ++it) {
            dets.push_back(*it);
            for (int64_t j : gi) ious.push_back(w[*it * a + j]);
        }
    }
    DoubleArray det_out({static_cast<py::ssize_t>(dets.size()), py::ssize_t{2}});
    double* dp = det_out.mutable_data();
    for (size_t k = 0; k < dets.size(); ++k) {
        dp[2 * k] = s[dets[k]];
        dp[2 * k + 1] = ap_areas.data()[dets[k]];
    }
    DoubleArray iou_out({static_cast<py::ssize_t>(ious.size())});
    std::copy(ious.begin(), ious.end(), iou_out.mutable_data());
    return py::make_tuple(groups, det_out, iou_out);
}

}  // namespace

void register_ap_patch(py::module_& m) {
    m.def("ap_patch", &ap_patch, "AP records of the touched classes of a prediction list.");
}

}  // namespace segcontrast
