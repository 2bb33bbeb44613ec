// The linear sum assignment of small IoU matrices, giving scipy's assignment on every input.
//
// Shortest augmenting paths with dual variables (D. F. Crouse, "On implementing 2D rectangular
// assignment algorithms", IEEE TAES 52(4), 2016), the variant scipy.optimize's
// linear_sum_assignment runs: a tall matrix is transposed, maximisation negates the costs,
// rows are added one at a time, columns are scanned from the last to the first with each
// chosen column swapped out of the scan list, and among columns of equal reduced cost an
// unassigned one is preferred. Ties between equal-weight assignments are broken by these same
// rules, so the matched pairs are scipy's, not just of the same total.
#include <cmath>
#include <limits>

#include "common.hpp"

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

// (rows, cols) of the assignment maximising the total weight, rows increasing.
py::tuple max_weight_assignment(const DoubleArray& weights) {
    if (weights.ndim() != 2) throw std::invalid_argument("weights must be 2-D");
    const int64_t nr = weights.shape(0), nc = weights.shape(1);
    const bool transpose = nc < nr;
    const int64_t rows = transpose ? nc : nr, cols = transpose ? nr : nc;
    std::vector<double> cost(static_cast<size_t>(rows * cols));
    const double* w = weights.data();
    for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < nc; ++j) {
            const double value = -w[i * nc + j];
            if (std::isnan(value) || value == -kInf)
                throw std::invalid_argument("weights must be finite");
            cost[transpose ? j * cols + i : i * cols + j] = value;
        }
    }
    Int64Array out_rows({rows}), out_cols({rows});
    int64_t* a = out_rows.mutable_data();
    int64_t* b = out_cols.mutable_data();
    if (rows == 0) return py::make_tuple(out_rows, out_cols);
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
    return py::make_tuple(out_rows, out_cols);
}

}  // namespace

void register_hungarian(py::module_& m) {
    m.def("max_weight_assignment", &max_weight_assignment, py::arg("weights"),
          "scipy.optimize.linear_sum_assignment(weights, maximize=True), the same pairs.");
}

}  // namespace segcontrast
