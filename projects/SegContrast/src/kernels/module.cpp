// segcontrast._kernels: the evaluator's per-image pixel work in C++ (bindings).
#include "common.hpp"

PYBIND11_MODULE(_kernels, m) {
    m.doc() = "The evaluator's per-image kernels: RLE decoding, mask intersections, painting, "
              "confusion matrices, the assignment, boundary bands and panoptic segments.";
    segcontrast::register_rle(m);
    segcontrast::register_masks(m);
    segcontrast::register_hungarian(m);
    segcontrast::register_boundary(m);
    segcontrast::register_panoptic(m);
    segcontrast::register_json_scan(m);
    segcontrast::register_polygons(m);
    segcontrast::register_coco_match(m);
    segcontrast::register_coco_accumulate(m);
    segcontrast::register_ap_patch(m);
    segcontrast::register_accounting(m);
    segcontrast::register_assignment(m);
}
