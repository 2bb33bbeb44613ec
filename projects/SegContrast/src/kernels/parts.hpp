// The cores of some kernels, shared by their own bindings and by the accounting's one call
// per image (accounting.cpp): they read plain pointers and crops, never Python objects.
#pragma once

#include <functional>

#include "common.hpp"

namespace segcontrast {

// hungarian.cpp: per class, the one-to-one matching maximising the IoU among pairs with IoU
// >= threshold (scipy's assignment where a class's candidate pairs are not one to one); the
// pairs (rows, cols) ordered by column. iou is (n, g), row-major.
void class_match_pairs(const double* iou, int64_t n, int64_t g, const int64_t* pred_classes,
                       const int64_t* gt_classes, double threshold, std::vector<int64_t>& rows,
                       std::vector<int64_t>& cols);

// masks.cpp: adds to counts (num_labels x num_labels, rows ground truth) the change of the
// confusion of `painted` against `gt` (both (H, width) label maps) when the pixels of the
// touched boxes are repainted with the masks in `order` (later wins; values[i] mask i's label).
void window_delta(const uint8_t* gt, const uint8_t* painted, int64_t width,
                  const std::vector<Crop>& masks, const uint8_t* values, const int64_t* order,
                  size_t n_order, const std::vector<Box>& touched, int64_t num_labels,
                  int64_t* counts);

// panoptic.cpp: one image's ground-truth segments (GtPanoptic): its label map, uint16 or
// int32 (wide), and each label's area.
struct GtSegments {
    const void* labels;
    bool wide;
    int64_t height, width, num_labels;
    const int64_t* areas;
};

// Where a kept prediction's segment mask is written: (index, height, width) -> zeroed bytes.
using SegmentBuffer = std::function<uint8_t*(size_t, int64_t, int64_t)>;

// The segments of an earlier list of the same image (its own kept predictions), for
// segments_into to reuse. An entry with position[i] >= 0 has the mask and score of that
// earlier entry and keeps its segment unless a mask differs within its box among those ranked
// above it: a mask of `changed` (seeded with the earlier kept masks the list has not), then
// each new mask kept and each earlier mask whose kept status changed, added as they are met.
// The ranks of the reused entries must keep their earlier order.
struct PriorSegments {
    const int64_t* position;  // (N,) index into the earlier list, -1 for a new entry
    const bool* kept;         // the earlier list's segments
    const int64_t* areas;
    const int64_t* hist;  // (earlier N x num_labels)
    std::vector<Box> changed;
};

// panoptic.cpp: pred_segments of the masks taken in `order` (rank order); kept (N), areas (N)
// and hist (N x num_labels) written; gt_copy (N) or nullptr; prior (without make_crop) or
// nullptr.
void segments_into(const std::vector<Crop>& masks, const int64_t* order, size_t n_order,
                   const GtSegments& gt, double overlap_threshold, const SegmentBuffer* make_crop,
                   const int64_t* gt_copy, bool* kept, int64_t* areas, int64_t* hist,
                   PriorSegments* prior = nullptr);

// panoptic.cpp: panoptic_stats into stats (num_categories x 4).
void stats_into(const int64_t* pred_categories, const bool* kept, const int64_t* seg_areas,
                const int64_t* hist, int64_t n_pred, const int64_t* gt_areas,
                const int64_t* gt_categories, const bool* gt_crowd, int64_t num_labels,
                const int64_t* crowd_classes, int64_t n_crowd_classes, int64_t num_categories,
                int64_t image_pixels, double* stats);

// ap_patch.cpp: the AP records of the touched classes of a prediction list (n entries; row(i)
// the entry's IoUs with the image's a annotations, asked only for entries of touched
// classes): groups (class, detections, ground truth) per touched class, dets (score, area)
// per detection, ious flattened per class.
void ap_patch_into(int64_t n, const int64_t* classes, const double* scores,
                   const double* ap_areas, const std::function<const double*(int64_t)>& row,
                   const int64_t* gt_classes, int64_t a, const std::vector<int64_t>& touched,
                   std::vector<int64_t>& groups, std::vector<double>& dets,
                   std::vector<double>& ious);

}  // namespace segcontrast
