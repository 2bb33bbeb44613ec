// The linear sum assignment of small IoU matrices, giving scipy's assignment on every input.
//
// Shortest augmenting paths with dual variables (D. F. Crouse, "On implementing 2D rectangular
// assignment algorithms", IEEE TAES 52(4), 2016), the variant scipy.optimize's
// linear_sum_assignment runs: a tall matrix is transposed, maximisation negates the costs,
// rows are added one at a time, columns are scanned from the last to the first with each
// chosen column swapped out of the scan list, and among columns of equal reduced cost an
// unassigned one is preferred. Ties between equal-weight assignments are broken by these same
// rules, so the matched pairs are scipy's, not just of the same total.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common.hpp"
#include "parts.hpp"

namespace segcontrast {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

class Assignment {
public:
    // cost: rows x cols, rows <= cols
    Assignment(std::vector<double> cost, int64_t rows, int64_t cols)
        : cost_(std::move(cost)), rows_(rows), cols_(cols), u_(rows, 0.0), v_(cols, 0.0),
          dist_(cols), via_(cols, -1), col_of_(rows, -1), row_of_(cols, -1),
          row_seen_(rows), col_seen_(cols), scan_(cols) {}

    // col_of[r] for every row; false when some row cannot be assigned
    bool solve() {
        for (int64_t row = 0; row < rows_; ++row) {
            double shortest = 0.0;
            const int64_t sink = shortest_path(row, shortest);
            if (sink < 0) return false;
            u_[row] += shortest;
            for (int64_t r = 0; r < rows_; ++r)
                if (row_seen_[r] && r != row) u_[r] += shortest - dist_[col_of_[r]];
            for (int64_t c = 0; c < cols_; ++c)
                if (col_seen_[c]) v_[c] -= shortest - dist_[c];
            // flip the path's edges back from the sink to the new row
            for (int64_t c = sink;;) {
                const int64_t r = via_[c];
                row_of_[c] = r;
                std::swap(col_of_[r], c);
                if (r == row) break;
            }
        }
        return true;
    }

    const std::vector<int64_t>& col_of() const { return col_of_; }

private:
    int64_t shortest_path(int64_t row, double& shortest) {
        int64_t left = cols_;
        for (int64_t k = 0; k < cols_; ++k) scan_[k] = cols_ - 1 - k;
        std::fill(row_seen_.begin(), row_seen_.end(), false);
        std::fill(col_seen_.begin(), col_seen_.end(), false);
        std::fill(dist_.begin(), dist_.end(), kInf);
        double reached = 0.0;
        for (int64_t r = row;;) {
            row_seen_[r] = true;
            int64_t pick = -1;
            double lowest = kInf;
            for (int64_t k = 0; k < left; ++k) {
                const int64_t c = scan_[k];
                const double reduced = reached + cost_[r * cols_ + c] - u_[r] - v_[c];
                if (reduced < dist_[c]) {
                    via_[c] = r;
                    dist_[c] = reduced;
                }
                if (dist_[c] < lowest || (dist_[c] == lowest && row_of_[c] == -1)) {
                    lowest = dist_[c];
                    pick = k;
                }
            }
            reached = lowest;
            if (reached == kInf) return -1;
            const int64_t c = scan_[pick];
            col_seen_[c] = true;
            scan_[pick] = scan_[--left];
            if (row_of_[c] == -1) {
                shortest = reached;
                return c;
            }
            r = row_of_[c];
        }
    }

    std::vector<double> cost_;
    int64_t rows_, cols_;
    std::vector<double> u_, v_, dist_;
    std::vector<int64_t> via_, col_of_, row_of_;
    std::vector<bool> row_seen_, col_seen_;
    std::vector<int64_t> scan_;
};

// The pairs (row, col) of the assignment of an nr x nc weight matrix (row-major) maximising
// the total weight, rows increasing.
void assign(const double* w, int64_t nr, int64_t nc, std::vector<int64_t>& a,
            std::vector<int64_t>& b) {
    const bool transpose = nc < nr;
    const int64_t rows = transpose ? nc : nr, cols = transpose ? nr : nc;
    a.assign(static_cast<size_t>(rows), 0);
    b.assign(static_cast<size_t>(rows), 0);
    if (rows == 0) return;
    std::vector<double> cost(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < nc; ++j) {
            const double value = -w[i * nc + j];
            if (std::isnan(value) || value == -kInf)
                throw std::invalid_argument("weights must be finite");
            cost[transpose ? j * cols + i : i * cols + j] = value;
        }
    }
    Assignment solver(std::move(cost), rows, cols);
    if (!solver.solve()) throw std::invalid_argument("the assignment is infeasible");
    const std::vector<int64_t>& col_of = solver.col_of();
    if (!transpose) {
        for (int64_t r = 0; r < rows; ++r) {
            a[r] = r;
            b[r] = col_of[r];
        }
    } else {
        // pairs (col_of[r], r) ordered by the original row col_of[r]
        std::vector<int64_t> order(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) order[r] = r;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t x, int64_t y) { return col_of[x] < col_of[y]; });
        for (int64_t k = 0; k < rows; ++k) {
            a[k] = col_of[order[k]];
            b[k] = order[k];
        }
    }
}

Int64Array to_array(const std::vector<int64_t>& v) {
    Int64Array out({static_cast<py::ssize_t>(v.size())});
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

// (rows, cols) of the assignment maximising the total weight, rows increasing.
py::tuple max_weight_assignment(const DoubleArray& weights) {
    if (weights.ndim() != 2) throw std::invalid_argument("weights must be 2-D");
    std::vector<int64_t> a, b;
    assign(weights.data(), weights.shape(0), weights.shape(1), a, b);
    return py::make_tuple(to_array(a), to_array(b));
}

// segcontrast.evaluation.metrics.instance.hungarian_match on rows ri and cols ci of iou:
// appends the matched pairs (as indices of iou).
void hungarian_pairs(const double* iou, int64_t stride, const std::vector<int64_t>& ri,
                     const std::vector<int64_t>& ci, double threshold,
                     std::vector<int64_t>& rows, std::vector<int64_t>& cols) {
    const int64_t n = static_cast<int64_t>(ri.size()), m = static_cast<int64_t>(ci.size());
    std::vector<uint8_t> cand(static_cast<size_t>(n * m));
    std::vector<int64_t> row_count(n, 0), col_count(m, 0);
    bool any = false;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) {
            const bool c = iou[ri[i] * stride + ci[j]] >= threshold;
            cand[i * m + j] = c;
            row_count[i] += c;
            col_count[j] += c;
            any |= c;
        }
    if (!any) return;
    const bool one_to_one = std::all_of(row_count.begin(), row_count.end(),
                                        [](int64_t c) { return c <= 1; }) &&
                            std::all_of(col_count.begin(), col_count.end(),
                                        [](int64_t c) { return c <= 1; });
    if (one_to_one) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < m; ++j)
                if (cand[i * m + j]) {
                    rows.push_back(ri[i]);
                    cols.push_back(ci[j]);
                }
        return;
    }
    std::vector<int64_t> rin, cin;
    for (int64_t i = 0; i < n; ++i)
        if (row_count[i]) rin.push_back(i);
    for (int64_t j = 0; j < m; ++j)
        if (col_count[j]) cin.push_back(j);
    const int64_t sr = static_cast<int64_t>(rin.size()), sc = static_cast<int64_t>(cin.size());
    std::vector<double> sub(static_cast<size_t>(sr * sc));
    for (int64_t i = 0; i < sr; ++i)
        for (int64_t j = 0; j < sc; ++j)
            sub[i * sc + j] =
                cand[rin[i] * m + cin[j]] ? iou[ri[rin[i]] * stride + ci[cin[j]]] : 0.0;
    std::vector<int64_t> a, b;
    assign(sub.data(), sr, sc, a, b);
    for (size_t k = 0; k < a.size(); ++k) {
        if (sub[a[k] * sc + b[k]] >= threshold) {
            rows.push_back(ri[rin[a[k]]]);
            cols.push_back(ci[cin[b[k]]]);
        }
    }
}

// segcontrast.evaluation.metrics.instance.class_match: per class, the matching of predictions
// to ground truth of their class; (rows, cols) ordered by column.
py::tuple class_match(const DoubleArray& iou, const Int64Array& pred_classes,
                      const Int64Array& gt_classes, double threshold) {
    const int64_t n = pred_classes.size(), g = gt_classes.size();
    if (n && g && (iou.ndim() != 2 || iou.shape(0) != n || iou.shape(1) != g))
        throw std::invalid_argument("iou must be (N, G)");
    std::vector<int64_t> rows, cols;
    class_match_pairs(iou.data(), n, g, pred_classes.data(), gt_classes.data(), threshold, rows,
                      cols);
    return py::make_tuple(to_array(rows), to_array(cols));
}

}  // namespace

void class_match_pairs(const double* w, int64_t n, int64_t g, const int64_t* pc,
                       const int64_t* gc, double threshold, std::vector<int64_t>& rows_out,
                       std::vector<int64_t>& cols_out) {
    std::vector<int64_t> row_count(n, 0), col_count(g, 0);
    std::vector<int64_t> rows, cols;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < g; ++j)
            if (pc[i] == gc[j] && w[i * g + j] >= threshold) {
                ++row_count[i];
                ++col_count[j];
                rows.push_back(i);
                cols.push_back(j);
            }
    std::vector<int64_t> conflict;
    for (int64_t j = 0; j < g; ++j)
        if (col_count[j] > 1) conflict.push_back(gc[j]);
    for (int64_t i = 0; i < n; ++i)
        if (row_count[i] > 1) conflict.push_back(pc[i]);
    if (!conflict.empty()) {
        std::sort(conflict.begin(), conflict.end());
        conflict.erase(std::unique(conflict.begin(), conflict.end()), conflict.end());
        std::vector<int64_t> r2, c2;
        for (size_t k = 0; k < rows.size(); ++k)
            if (!std::binary_search(conflict.begin(), conflict.end(), pc[rows[k]])) {
                r2.push_back(rows[k]);
                c2.push_back(cols[k]);
            }
        for (int64_t cls : conflict) {
            std::vector<int64_t> pi, gi;
            for (int64_t i = 0; i < n; ++i)
                if (pc[i] == cls) pi.push_back(i);
            for (int64_t j = 0; j < g; ++j)
                if (gc[j] == cls) gi.push_back(j);
            hungarian_pairs(w, g, pi, gi, threshold, r2, c2);
        }
        rows.swap(r2);
        cols.swap(c2);
    }
    std::vector<int64_t> order(rows.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(k);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return cols[x] < cols[y]; });
    rows_out.resize(order.size());
    cols_out.resize(order.size());
    for (size_t k = 0; k < order.size(); ++k) {
        rows_out[k] = rows[order[k]];
        cols_out[k] = cols[order[k]];
    }
}

void register_hungarian(py::module_& m) {
    m.def("max_weight_assignment", &max_weight_assignment, py::arg("weights"),
          "scipy.optimize.linear_sum_assignment(weights, maximize=True), the same pairs.");
    m.def("class_match", &class_match, py::arg("iou"), py::arg("pred_classes"),
          py::arg("gt_classes"), py::arg("threshold"),
          "Per class, the one-to-one matching maximising the IoU; pairs ordered by column.");
}

}  // namespace segcontrast
