// The gap accounting's fixed prediction lists, built for the accounting's one call per image
// (accounting.cpp) instead of in Python: what segcontrast.evaluation.accounting.fixes makes
// (fix_one, fix_all) and image_variants' low-score variant, entry by entry, in the same order,
// with the same touched classes and boxes (the windows repainted depend on the boxes' order).
// The rules and tie-breaks are fixes.py's and assignment.py's; fixes.py stays the reference.
#pragma once

#include <deque>

#include "common.hpp"

namespace segcontrast {

// The accounting's rows: assignment.py's order of ERROR_TYPES, then "all fixes together".
enum Row : int64_t {
    kMerged,
    kSplit,
    kDuplicate,
    kConfusion,
    kLocalisation,
    kMaskQuality,
    kMissed,
    kBackground,
    kInCrowd,
    kLowScore,
    kAll,
};

// fixes.ADDED_SCORE: an object the oracle adds is a sure detection.
constexpr double kAddedScore = 1.0;

// One fixed prediction list as the scoring reads it (a PredList and its touched sets).
struct Variant {
    int64_t row = 0;
    bool exact_copies = false;  // "all fixes together": one exact copy of every object
    std::vector<Crop> masks;
    std::vector<int64_t> classes;
    std::vector<double> scores, ap_areas;
    std::vector<int64_t> source;       // original prediction an entry is identical to, -1
    std::vector<int64_t> mask_source;  // original prediction whose mask it has, -1
    std::vector<int64_t> gt_copy;      // non-crowd object whose mask it has, -1
    std::vector<int64_t> touched;      // classes a fix changed, increasing, distinct
    std::vector<Box> touched_boxes;    // boxes of the masks a fix removed, then of those it added
    // the bytes of the crops the fix made (merged pieces, split unions); a deque, so that
    // the crops' pointers stay valid while more are added
    std::deque<std::vector<uint8_t>> pixels;
};

// A list of indices borrowed from a Python array.
struct Span {
    const int64_t* data = nullptr;
    int64_t size = 0;
};

// One image's predictions, objects and error assignment (accounting.assignment's
// ErrorAssignment), borrowed from Python arrays checked by the caller.
struct FixInputs {
    // the original predictions, all of them (PredList.original)
    const std::vector<Crop>* pred = nullptr;
    const int64_t* pred_areas = nullptr;  // as given (a changed class keeps the mask's area)
    const int64_t* pred_classes = nullptr;
    const double* pred_scores = nullptr;
    const double* pred_ap_areas = nullptr;
    int64_t m = 0;
    const int64_t* keep = nullptr;  // (N,) list index of each kept prediction, in [0, m)
    int64_t n_keep = 0;
    // the non-crowd objects (areas as given: the fixes skip objects without pixels)
    std::vector<Crop> objects;
    std::vector<int64_t> object_areas, object_classes;
    // the assignment, per kept prediction (N) or object (G); indices checked to be in range
    const int64_t* pred_type = nullptr;
    const int64_t* pred_target = nullptr;
    const bool* fix_removes = nullptr;
    const int64_t* pred_match = nullptr;
    const bool* gt_missed = nullptr;
    std::vector<Span> merged_objects;  // (N,)
    std::vector<int64_t> split_objects;
    std::vector<Span> split_pieces;  // (S,) kept indices
};

// fixes.fix_one: only the errors of `row` fixed (a row other than kLowScore and kAll).
void fix_one(const FixInputs& in, int64_t row, Variant& out);

// fixes.fix_all: every error fixed.
void fix_all(const FixInputs& in, Variant& out);

// image_variants' low-score variant: the kept predictions alone, in their order.
void low_score_variant(const FixInputs& in, Variant& out);

}  // namespace segcontrast
