// The COCO AP records of some classes of one image's predictions, grouped as
// segcontrast.evaluation.metrics.coco_ap.ApImage.build groups them.
#include <algorithm>
#include <numeric>

#include "common.hpp"
#include "parts.hpp"

namespace segcontrast {

constexpr int64_t kMaxDets = 100;

// Per touched class its detections by decreasing score (ties in list order), at most 100, and
// their IoUs with the class's annotations (annotation order), flattened.
void ap_patch_into(int64_t n, const int64_t* c, const double* s, const double* ap_areas,
                   const std::function<const double*(int64_t)>& row, const int64_t* gcls,
                   int64_t a, const std::vector<int64_t>& touched, std::vector<int64_t>& groups,
                   std::vector<double>& dets, std::vector<double>& ious) {
    std::vector<int64_t> members, gi;
    for (const int64_t cls : touched) {
        members.clear();
        for (int64_t i = 0; i < n; ++i)
            if (c[i] == cls) members.push_back(i);
        std::stable_sort(members.begin(), members.end(),
                         [&](int64_t x, int64_t y) { return s[x] > s[y]; });
        if (static_cast<int64_t>(members.size()) > kMaxDets) members.resize(kMaxDets);
        gi.clear();
        for (int64_t j = 0; j < a; ++j)
            if (gcls[j] == cls) gi.push_back(j);
        groups.push_back(cls);
        groups.push_back(static_cast<int64_t>(members.size()));
        groups.push_back(static_cast<int64_t>(gi.size()));
        for (const int64_t i : members) {
            dets.push_back(s[i]);
            dets.push_back(ap_areas[i]);
            if (gi.empty()) continue;
            const double* w = row(i);
            for (const int64_t j : gi) ious.push_back(w[j]);
        }
    }
}

namespace {

// (groups (T, 3) class, detections, ground truth; dets (D, 2) score, area; ious).
py::tuple ap_patch(const Int64Array& classes, const DoubleArray& scores,
                   const DoubleArray& ap_areas, const DoubleArray& iou,
                   const Int64Array& gt_classes, const Int64Array& touched) {
    const int64_t n = classes.size(), a = gt_classes.size(), t = touched.size();
    if (n && a && (iou.ndim() != 2 || iou.shape(0) != n || iou.shape(1) != a))
        throw std::invalid_argument("iou must be (N, A)");
    if (scores.size() != n || ap_areas.size() != n)
        throw std::invalid_argument("scores and areas must be (N,)");
    const double* w = iou.data();
    std::vector<int64_t> groups;
    std::vector<double> dets, ious;
    ap_patch_into(n, classes.data(), scores.data(), ap_areas.data(),
                  [&](int64_t i) { return w + i * a; }, gt_classes.data(), a,
                  std::vector<int64_t>(touched.data(), touched.data() + t), groups, dets, ious);
    Int64Array group_out({t, int64_t{3}});
    std::copy(groups.begin(), groups.end(), group_out.mutable_data());
    DoubleArray det_out({static_cast<py::ssize_t>(dets.size() / 2), py::ssize_t{2}});
    std::copy(dets.begin(), dets.end(), det_out.mutable_data());
    DoubleArray iou_out({static_cast<py::ssize_t>(ious.size())});
    std::copy(ious.begin(), ious.end(), iou_out.mutable_data());
    return py::make_tuple(group_out, det_out, iou_out);
}

}  // namespace

void register_ap_patch(py::module_& m) {
    m.def("ap_patch", &ap_patch, "AP records of the touched classes of a prediction list.");
}

}  // namespace segcontrast
