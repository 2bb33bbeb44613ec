// Boundary IoU of matched pairs: each mask's inner band of width d, computed on its crop.
//
// A pixel of the mask is inside (not boundary) when the (2d + 1) square around it lies within
// the crop and holds only mask pixels; outside the crop the mask is empty. Two passes of
// running lengths of set pixels (rows, then columns) give that square test.
#include <unordered_map>

#include "common.hpp"

namespace segcontrast {
namespace {

// The band of one crop, row-major, same shape as the crop.
std::vector<uint8_t> band_of(const Crop& c, int64_t d) {
    const int64_t h = c.area > 0 ? c.box.height() : 0, w = c.area > 0 ? c.box.width() : 0;
    std::vector<uint8_t> band(static_cast<size_t>(h * w));
    for (int64_t y = 0; y < h; ++y)
        std::copy(c.data + y * c.stride, c.data + y * c.stride + w, band.begin() + y * w);
    const int64_t size = 2 * d + 1;
    if (h < size || w < size) return band;  // no square fits: the whole mask is band
    // across[y * w + x]: the square's row span at (y, x) is all set and within the crop; from
    // each run of set pixels [s, e) of a row, the centres s + d .. e - d - 1
    std::vector<uint8_t> across(static_cast<size_t>(h * w), 0);
    for (int64_t y = 0; y < h; ++y) {
        const uint8_t* row = band.data() + y * w;
        for (int64_t x = 0; x < w;) {
            while (x < w && !row[x]) ++x;
            const int64_t start = x;
            while (x < w && row[x]) ++x;
            if (x - start >= size)
                std::fill(across.begin() + y * w + start + d, across.begin() + y * w + x - d,
                          uint8_t{1});
        }
    }
    // down the columns: a centre whose column span of `across` is all set is inside
    std::vector<int64_t> run(static_cast<size_t>(w), 0);
    for (int64_t y = 0; y < h; ++y) {
        const uint8_t* a = across.data() + y * w;
        int64_t* r = run.data();
        for (int64_t x = 0; x < w; ++x) r[x] = a[x] ? r[x] + 1 : 0;
        if (y >= size - 1) {
            uint8_t* out = band.data() + (y - d) * w;
            for (int64_t x = 0; x < w; ++x) out[x] = r[x] >= size ? 0 : out[x];
        }
    }
    return band;
}

DoubleArray boundary_iou_pairs(const py::handle& p_boxes, const py::handle& p_crops,
                               const py::handle& p_areas, const py::handle& g_boxes,
                               const py::handle& g_crops, const py::handle& g_areas,
                               const Int64Array& pairs, int64_t dilation) {
    Masks pred(p_boxes, p_crops, p_areas), gt(g_boxes, g_crops, g_areas);
    const int64_t n = pairs.size() ? pairs.shape(0) : 0;
    DoubleArray out({n});
    double* o = out.mutable_data();
    std::unordered_map<int64_t, std::vector<uint8_t>> pred_bands, gt_bands;
    const int64_t* pp = pairs.data();
    for (int64_t k = 0; k < n; ++k) {
        const int64_t i = pp[2 * k], j = pp[2 * k + 1];
        if (i < 0 || j < 0 || static_cast<size_t>(i) >= pred.size() ||
            static_cast<size_t>(j) >= gt.size())
            throw std::out_of_range("pair index out of range");
        auto pi = pred_bands.find(i);
        if (pi == pred_bands.end()) pi = pred_bands.emplace(i, band_of(pred[i], dilation)).first;
        auto gi = gt_bands.find(j);
        if (gi == gt_bands.end()) gi = gt_bands.emplace(j, band_of(gt[j], dilation)).first;
        const Crop &cp = pred[i], &cg = gt[j];
        const std::vector<uint8_t>&pb = pi->second, &gb = gi->second;
        int64_t count_p = 0, count_g = 0, inter = 0;
        for (uint8_t v : pb) count_p += v;
        for (uint8_t v : gb) count_g += v;
        if (cp.area > 0 && cg.area > 0) {
            const Box r = intersect(cp.box, cg.box);
            const int64_t wp = cp.box.width(), wg = cg.box.width(), span = r.x1 - r.x0;
            for (int64_t y = r.y0; y < r.y1; ++y) {
                const uint8_t* a = pb.data() + (y - cp.box.y0) * wp + (r.x0 - cp.box.x0);
                const uint8_t* b = gb.data() + (y - cg.box.y0) * wg + (r.x0 - cg.box.x0);
                uint32_t row = 0;
                for (int64_t x = 0; x < span; ++x) row += a[x] & b[x];
                inter += row;
            }
        }
        const int64_t uni = count_p + count_g - inter;
        o[k] = uni > 0 ? static_cast<double>(inter) / static_cast<double>(uni) : 0.0;
    }
    return out;
}

py::array_t<bool> mask_boundary(const py::array_t<bool, py::array::c_style>& crop,
                                int64_t dilation) {
    if (crop.ndim() != 2) throw std::invalid_argument("crop must be 2-D");
    Crop c;
    c.box = {0, 0, crop.shape(1), crop.shape(0)};
    c.data = reinterpret_cast<const uint8_t*>(crop.data());
    c.stride = crop.shape(1);
    c.area = crop.shape(0) * crop.shape(1) > 0 ? 1 : 0;
    py::array_t<bool> out({crop.shape(0), crop.shape(1)});
    std::vector<uint8_t> band = band_of(c, dilation);
    std::copy(band.begin(), band.end(), reinterpret_cast<uint8_t*>(out.mutable_data()));
    return out;
}

}  // namespace

void register_boundary(py::module_& m) {
    m.def("boundary_iou_pairs", &boundary_iou_pairs, "Boundary IoU of (pred, gt) pairs.");
    m.def("mask_boundary", &mask_boundary, py::arg("crop"), py::arg("dilation"),
          "The inner band of width dilation of a crop.");
}

}  // namespace segcontrast
