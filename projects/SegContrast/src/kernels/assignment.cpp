// The gap accounting's error assignment of one image (accounting.assignment.assign_errors):
// the row of every kept prediction and non-crowd object, from the instance side's matching and
// the intersections. The rules, their order and tie-breaks are assignment.py's (its module
// docstring); the rows are numbered as there (fixes.hpp's Row). The numpy version it replaced
// is the tests' reference (tests/evaluation/assignment_reference.py).
#include <algorithm>
#include <numeric>

#include "common.hpp"
#include "fixes.hpp"

namespace segcontrast {
namespace {

using BoolArray = py::array_t<bool, py::array::c_style | py::array::forcecast>;
// Intersections and areas are pixel counts: an array of floats is refused, not truncated.
using CountArray = py::array_t<int64_t, py::array::c_style>;

template <typename T>
py::array_t<T> array_of(const std::vector<T>& values) {
    py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
    std::copy(values.begin(), values.end(), out.mutable_data());
    return out;
}

py::array_t<bool> bools_of(const std::vector<uint8_t>& values) {
    py::array_t<bool> out(static_cast<py::ssize_t>(values.size()));
    bool* to = out.mutable_data();
    for (size_t i = 0; i < values.size(); ++i) to[i] = values[i] != 0;
    return out;
}

// Of row i of an (n, g) matrix, the first column of the largest value (numpy's argmax).
template <typename F>
int64_t first_max(int64_t g, F&& value, double& best) {
    int64_t at = 0;
    best = value(0);
    for (int64_t j = 1; j < g; ++j) {
        const double v = value(j);
        if (v > best) {
            best = v;
            at = j;
        }
    }
    return at;
}

// Returns the ErrorAssignment's fields in its order: pred_type, pred_target, pred_fix_removes,
// merged_objects, split_objects, split_pieces, gt_missed, counts, pred_match.
py::tuple assign_errors(const Int64Array& pred_classes_a, const CountArray& pred_areas_a,
                        const DoubleArray& pred_scores_a, const Int64Array& gt_classes_a,
                        const CountArray& gt_areas_a, const CountArray& inter_a,
                        const DoubleArray& iou_a, const Int64Array& pred_index,
                        const Int64Array& gt_index, const py::object& pred_duplicate,
                        const BoolArray& pred_ignored, const BoolArray& pred_matched,
                        double iou_threshold, double localisation_iou, int64_t num_low_score) {
    const int64_t n = pred_classes_a.size(), g = gt_classes_a.size();
    if (pred_areas_a.size() != n || pred_scores_a.size() != n || pred_ignored.size() != n ||
        pred_matched.size() != n || gt_areas_a.size() != g)
        throw std::invalid_argument("assign_errors: arrays of different lengths");
    if (inter_a.ndim() != 2 || iou_a.ndim() != 2 || inter_a.shape(0) != n ||
        inter_a.shape(1) != g || iou_a.shape(0) != n || iou_a.shape(1) != g)
        throw std::invalid_argument("assign_errors: inter and iou must be (N, G)");
    if (pred_index.size() != gt_index.size())
        throw std::invalid_argument("assign_errors: the matched pairs of different lengths");
    const int64_t *pc = pred_classes_a.data(), *pa = pred_areas_a.data(),
                  *gc = gt_classes_a.data(), *ga = gt_areas_a.data(), *inter = inter_a.data();
    const double *scores = pred_scores_a.data(), *iou = iou_a.data();
    const bool *ignored = pred_ignored.data(), *matched = pred_matched.data();
    std::vector<uint8_t> duplicate_flag(static_cast<size_t>(n), 0);
    if (!pred_duplicate.is_none()) {
        const BoolArray d = BoolArray::ensure(pred_duplicate);
        if (!d || d.size() != n) throw std::invalid_argument("assign_errors: pred_duplicate");
        std::copy(d.data(), d.data() + n, duplicate_flag.begin());
    }
    std::vector<uint8_t> matched_gt(static_cast<size_t>(g), 0);
    std::vector<int64_t> gt_of_pred(static_cast<size_t>(n), -1);
    for (py::ssize_t p = 0; p < pred_index.size(); ++p) {
        const int64_t i = pred_index.data()[p], j = gt_index.data()[p];
        if (i < 0 || i >= n || j < 0 || j >= g)
            throw std::invalid_argument("assign_errors: a matched pair outside the image");
        matched_gt[static_cast<size_t>(j)] = 1;
        gt_of_pred[static_cast<size_t>(i)] = j;
    }
    const auto same = [&](int64_t i, int64_t j) { return pc[i] == gc[j]; };
    std::vector<int64_t> kind(static_cast<size_t>(n), -1), target(static_cast<size_t>(n), -1);

    // merged: more than half of each of >= 2 objects of its class
    const auto covers = [&](int64_t i, int64_t j) {
        const int64_t x = inter[i * g + j];
        return 2 * x > ga[j] && same(i, j) && x > 0;
    };
    std::vector<uint8_t> merged(static_cast<size_t>(n), 0), explained(static_cast<size_t>(g), 0);
    py::list merged_objects;
    std::vector<int64_t> objects;
    for (int64_t i = 0; i < n; ++i) {
        objects.clear();
        for (int64_t j = 0; j < g; ++j)
            if (covers(i, j)) objects.push_back(j);
        if (objects.size() >= 2 && !ignored[i]) {
            merged[static_cast<size_t>(i)] = 1;
            kind[static_cast<size_t>(i)] = kMerged;
            for (const int64_t j : objects) explained[static_cast<size_t>(j)] = 1;
        } else {
            objects.clear();
        }
        merged_objects.append(array_of(objects));
    }

    // split: the object holding most of each piece (the first of the largest intersections)
    std::vector<int64_t> owner(static_cast<size_t>(n), -1), pieces_of(static_cast<size_t>(g), 0);
    for (int64_t i = 0; i < n; ++i) {
        if (duplicate_flag[static_cast<size_t>(i)] || merged[static_cast<size_t>(i)] || ignored[i])
            continue;
        int64_t best = -1;
        for (int64_t j = 0; j < g; ++j) {
            const int64_t x = inter[i * g + j];
            if (2 * x > pa[i] && same(i, j) && x > 0 && (best < 0 || x > inter[i * g + best]))
                best = j;
        }
        owner[static_cast<size_t>(i)] = best;
        if (best >= 0) ++pieces_of[static_cast<size_t>(best)];
    }
    std::vector<int64_t> split_objects;
    py::list split_pieces;
    std::vector<int64_t> pieces;
    for (int64_t j = 0; j < g; ++j) {
        if (pieces_of[static_cast<size_t>(j)] < 2) continue;
        split_objects.push_back(j);
        explained[static_cast<size_t>(j)] = 1;
        pieces.clear();
        for (int64_t i = 0; i < n; ++i)
            if (owner[static_cast<size_t>(i)] == j) {
                pieces.push_back(i);
                kind[static_cast<size_t>(i)] = kSplit;
            }
        split_pieces.append(array_of(pieces));
    }

    // the false positives: duplicate, class confusion, localisation, else background
    std::vector<uint8_t> false_pos(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
        if (matched[i] || ignored[i] || kind[static_cast<size_t>(i)] >= 0) continue;
        false_pos[static_cast<size_t>(i)] = 1;
        bool on_matched = false;
        for (int64_t j = 0; j < g && !on_matched; ++j)
            on_matched = iou[i * g + j] >= iou_threshold && same(i, j) &&
                         matched_gt[static_cast<size_t>(j)];
        if (duplicate_flag[static_cast<size_t>(i)] || on_matched) {
            kind[static_cast<size_t>(i)] = kDuplicate;
            continue;
        }
        if (!g) continue;
        double best = 0.0;
        const double* row = iou + i * g;
        int64_t j = first_max(g, [&](int64_t c) { return same(i, c) ? 0.0 : row[c]; }, best);
        if (best >= iou_threshold) {
            kind[static_cast<size_t>(i)] = kConfusion;
            target[static_cast<size_t>(i)] = j;
            continue;
        }
        j = first_max(g, [&](int64_t c) { return same(i, c) ? row[c] : 0.0; }, best);
        if (best >= localisation_iou) {
            kind[static_cast<size_t>(i)] = kLocalisation;
            target[static_cast<size_t>(i)] = j;
        }
    }
    // a confusion or localisation is fixed onto its object when it is the highest-ranked one
    // of its row aiming at it and the object is not matched; else its fix removes it
    std::vector<uint8_t> fix_removes(static_cast<size_t>(n), 0), taken(static_cast<size_t>(g));
    std::vector<int64_t> index;
    for (const int64_t row : {int64_t{kConfusion}, int64_t{kLocalisation}}) {
        index.clear();
        for (int64_t i = 0; i < n; ++i)
            if (kind[static_cast<size_t>(i)] == row) index.push_back(i);
        std::stable_sort(index.begin(), index.end(),
                         [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
        std::fill(taken.begin(), taken.end(), 0);
        for (const int64_t i : index) {
            const auto j = static_cast<size_t>(target[static_cast<size_t>(i)]);
            const bool first = !taken[j];
            taken[j] = 1;
            if (first && !matched_gt[j])
                explained[j] = 1;
            else
                fix_removes[static_cast<size_t>(i)] = 1;
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        int64_t& k = kind[static_cast<size_t>(i)];
        if (matched[i] && k < 0) {
            const int64_t j = gt_of_pred[static_cast<size_t>(i)];
            if (j < 0) throw std::invalid_argument("assign_errors: a matched prediction's pair");
            if (iou[i * g + j] < 1.0) {
                k = kMaskQuality;
                target[static_cast<size_t>(i)] = j;
            }
        }
        if (false_pos[static_cast<size_t>(i)] && k < 0) k = kBackground;
        if (ignored[i]) k = kInCrowd;
    }

    std::vector<uint8_t> gt_missed(static_cast<size_t>(g), 0);
    std::vector<int64_t> counts(static_cast<size_t>(kAll), 0);
    for (const int64_t k : kind)
        if (k >= 0) ++counts[static_cast<size_t>(k)];
    for (int64_t j = 0; j < g; ++j)
        gt_missed[static_cast<size_t>(j)] =
            !matched_gt[static_cast<size_t>(j)] && !explained[static_cast<size_t>(j)];
    counts[kSplit] = static_cast<int64_t>(split_objects.size());
    counts[kMissed] = std::count(gt_missed.begin(), gt_missed.end(), 1);
    counts[kLowScore] = num_low_score;
    return py::make_tuple(array_of(kind), array_of(target), bools_of(fix_removes),
                          merged_objects, array_of(split_objects), split_pieces,
                          bools_of(gt_missed), array_of(counts), array_of(gt_of_pred));
}

}  // namespace

void register_assignment(py::module_& m) {
    m.def("assign_errors", &assign_errors,
          "The gap accounting's error type of every kept prediction and object of one image.");
}

}  // namespace segcontrast
