// A scan of JSON text for numbers that a 64-bit parser would not keep as integers.
#include <cmath>

#include "common.hpp"

namespace segcontrast {
namespace {

// Whether the text holds, outside strings, a run of `digits` or more decimal digits.
bool has_long_number(const py::bytes& text, int64_t digits) {
    char* data = nullptr;
    Py_ssize_t size = 0;
    PyBytes_AsStringAndSize(text.ptr(), &data, &size);
    bool in_string = false;
    int64_t run = 0;
    for (Py_ssize_t i = 0; i < size; ++i) {
        const char c = data[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c >= '0' && c <= '9') {
            if (++run >= digits) return true;
            continue;
        }
        run = 0;
        if (c == '"') in_string = true;
    }
    return false;
}

}  // namespace

void register_json_scan(py::module_& m) {
    m.def("has_long_number", &has_long_number, py::arg("text"), py::arg("digits"),
          "Whether JSON text holds, outside strings, a run of `digits` or more digits.");
}

}  // namespace segcontrast

namespace segcontrast {
namespace {

// A plain number of JSON (an exact int or float, not bool) as a double; false otherwise, or
// when an int is too large for a double to hold exactly.
bool plain_number(PyObject* v, double& out) {
    if (PyFloat_CheckExact(v)) {
        out = PyFloat_AS_DOUBLE(v);
        return std::isfinite(out);
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        const long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || i > (1LL << 53) || i < -(1LL << 53)) return false;
        out = static_cast<double>(i);
        return true;
    }
    return false;
}

// The polygons as lists of floats when every check of the annotation checker passes without a
// word (nested lists of finite numbers, each of an even length of at least 6, within the
// image and its tolerance, few enough points); None otherwise.
py::object plain_polygons(const py::handle& segmentation, double height, double width,
                          double tolerance, int64_t max_points) {
    PyObject* segm = segmentation.ptr();
    if (!PyList_CheckExact(segm) || PyList_GET_SIZE(segm) == 0) return py::none();
    const Py_ssize_t n = PyList_GET_SIZE(segm);
    int64_t points = 0;
    for (Py_ssize_t p = 0; p < n; ++p) {
        PyObject* poly = PyList_GET_ITEM(segm, p);
        if (!PyList_CheckExact(poly)) return py::none();
        const Py_ssize_t len = PyList_GET_SIZE(poly);
        if (len % 2 || len < 6) return py::none();
        points += len / 2;
    }
    if (points > max_points) return py::none();
    py::list out(n);
    for (Py_ssize_t p = 0; p < n; ++p) {
        PyObject* poly = PyList_GET_ITEM(segm, p);
        const Py_ssize_t len = PyList_GET_SIZE(poly);
        py::list coords(len);
        for (Py_ssize_t k = 0; k < len; ++k) {
            double v = 0.0;
            if (!plain_number(PyList_GET_ITEM(poly, k), v)) return py::none();
            const double limit = (k % 2 ? height : width) + tolerance;
            if (v < -tolerance || v > limit) return py::none();
            coords[k] = py::float_(v);
        }
        out[p] = std::move(coords);
    }
    return std::move(out);
}

}  // namespace

void register_polygons(py::module_& m) {
    m.def("plain_polygons", &plain_polygons, py::arg("segmentation"), py::arg("height"),
          py::arg("width"), py::arg("tolerance"), py::arg("max_points"),
          "Polygons as float lists when they need no message; None otherwise.");
}

}  // namespace segcontrast
