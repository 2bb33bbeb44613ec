// Shared by the kernels: masks of one image as tight crops, read from Python without copies.
//
// A set of masks is what segcontrast.data.masks.MaskCrops holds: boxes (N, 4) int64 x0, y0, x1,
// y1 (exclusive ends), one 2-D bool array per mask of shape (y1 - y0, x1 - x0), and the image
// size. The kernels read the crops' bytes in place (bool is one byte, 0 or 1).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace segcontrast {

namespace py = pybind11;

using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

struct Box {
    int64_t x0, y0, x1, y1;
    bool meets(const Box& o) const {
        return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1;
    }
    int64_t width() const { return x1 - x0; }
    int64_t height() const { return y1 - y0; }
};

// One mask: its box and its crop's bytes (row y of the crop starts at data + y * stride).
struct Crop {
    Box box;
    const uint8_t* data = nullptr;
    int64_t stride = 0;
    int64_t area = 0;
    uint8_t at(int64_t y, int64_t x) const { return data[y * stride + x]; }  // crop coordinates
};

// The masks of a MaskCrops (boxes, crops, areas), borrowed from Python objects that outlive it.
class Masks {
public:
    Masks(const py::handle& boxes, const py::handle& crops, const py::handle& areas) {
        Int64Array b = Int64Array::ensure(boxes);
        Int64Array a = Int64Array::ensure(areas);
        if (!b || !a) throw std::invalid_argument("boxes and areas must be integer arrays");
        py::sequence seq = py::reinterpret_borrow<py::sequence>(crops);
        const size_t n = seq.size();
        if ((b.ndim() != 2 || b.shape(1) != 4 || static_cast<size_t>(b.shape(0)) != n) && n)
            throw std::invalid_argument("boxes must be (N, 4) for N crops");
        if (static_cast<size_t>(a.size()) != n)
            throw std::invalid_argument("areas must be (N,) for N crops");
        items_.resize(n);
        const int64_t* bp = b.data();
        const int64_t* ap = a.data();
        for (size_t i = 0; i < n; ++i) {
            Crop& c = items_[i];
            c.box = {bp[4 * i], bp[4 * i + 1], bp[4 * i + 2], bp[4 * i + 3]};
            c.area = ap[i];
            py::object item = seq[i];
            if (!py::isinstance<py::array>(item))
                throw std::invalid_argument("crops must be 2-D bool arrays");
            py::array arr = py::reinterpret_borrow<py::array>(item);
            if (arr.itemsize() != 1 || arr.ndim() != 2)
                throw std::invalid_argument("crops must be 2-D bool arrays");
            const int64_t h = arr.shape(0), w = arr.shape(1);
            if (c.area > 0 && (h != c.box.height() || w != c.box.width()))
                throw std::invalid_argument("a crop's shape differs from its box");
            if (h > 0 && w > 0 && (arr.strides(1) != 1 || arr.strides(0) < w)) {
                arr = py::array::ensure(item, py::array::c_style);
                keep_.push_back(arr);
            }
            c.data = static_cast<const uint8_t*>(arr.data());
            c.stride = arr.ndim() == 2 ? arr.strides(0) : 0;
            if (h == 0 || w == 0) c.area = 0;
            keep_.push_back(std::move(item));
        }
    }
    size_t size() const { return items_.size(); }
    const Crop& operator[](size_t i) const { return items_[i]; }
    const std::vector<Crop>& items() const { return items_; }

private:
    std::vector<Crop> items_;
    std::vector<py::object> keep_;
};

// The intersection of two boxes; empty (x1 <= x0 or y1 <= y0) when they do not meet.
inline Box intersect(const Box& a, const Box& b) {
    return {std::max(a.x0, b.x0), std::max(a.y0, b.y0), std::min(a.x1, b.x1),
            std::min(a.y1, b.y1)};
}

// Pixels set in both crops (image coordinates decide which bytes meet).
inline int64_t count_and(const Crop& a, const Crop& b) {
    const Box r = intersect(a.box, b.box);
    if (r.x1 <= r.x0 || r.y1 <= r.y0) return 0;
    const int64_t w = r.x1 - r.x0;
    int64_t total = 0;
    for (int64_t y = r.y0; y < r.y1; ++y) {
        const uint8_t* pa = a.data + (y - a.box.y0) * a.stride + (r.x0 - a.box.x0);
        const uint8_t* pb = b.data + (y - b.box.y0) * b.stride + (r.x0 - b.box.x0);
        uint32_t row = 0;
        for (int64_t x = 0; x < w; ++x) row += pa[x] & pb[x];
        total += row;
    }
    return total;
}

void register_rle(py::module_& m);
void register_masks(py::module_& m);
void register_hungarian(py::module_& m);
void register_boundary(py::module_& m);
void register_panoptic(py::module_& m);
void register_json_scan(py::module_& m);
void register_polygons(py::module_& m);
void register_coco_match(py::module_& m);
void register_coco_accumulate(py::module_& m);
void register_ap_patch(py::module_& m);
void register_accounting(py::module_& m);
void register_assignment(py::module_& m);

}  // namespace segcontrast
