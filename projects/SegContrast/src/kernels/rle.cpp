// COCO's compressed RLE decoded straight into tight crops.
//
// The counts string holds one number per run, 5 bits per character from '0' (48) on, the 6th
// bit saying "more characters follow", the 5th bit of the last character the sign; from the
// fourth run on each number is the difference to the run two places earlier. Runs alternate
// background and foreground in column-major pixel order, starting with background.
#include <cstring>
#include <string_view>

#include "common.hpp"

namespace segcontrast {
namespace {

constexpr int kMaxCharsPerNumber = 7;
constexpr int64_t kMaxRun = 4294967295LL;  // 2**32 - 1

// Runs of one counts string; false when it does not decode (the Python side says why).
bool parse_counts(std::string_view text, std::vector<int64_t>& runs) {
    runs.clear();
    size_t p = 0;
    while (p < text.size()) {
        int64_t value = 0;
        int k = 0;
        bool more = true;
        int64_t c = 0;
        while (more) {
            if (p >= text.size() || k >= kMaxCharsPerNumber) return false;
            c = static_cast<unsigned char>(text[p]) - 48;
            if (c < 0 || c >= 64) return false;
            value |= (c & 0x1f) << (5 * k);
            more = (c & 0x20) != 0;
            ++p;
            ++k;
        }
        if (c & 0x10) value -= int64_t{1} << (5 * k);
        if (runs.size() > 2) value += runs[runs.size() - 2];
        if (value < 0 || value > kMaxRun) return false;
        runs.push_back(value);
    }
    return true;
}

// pycocotools' rleToBbox (x, y, w, h), with its uint32 arithmetic.
void coco_bbox(const std::vector<int64_t>& runs, uint32_t h, uint32_t w, int64_t out[4]) {
    const size_t m = runs.size() / 2 * 2;
    out[0] = out[1] = out[2] = out[3] = 0;
    if (m == 0) return;
    uint32_t xs = w, ys = h, xe = 0, ye = 0, cc = 0, xp = 0;
    for (size_t j = 0; j < m; ++j) {
        cc += static_cast<uint32_t>(runs[j]);
        const uint32_t t = cc - static_cast<uint32_t>(j % 2);
        const uint32_t y = t % h, x = (t - y) / h;
        if (j % 2 == 0) {
            xp = x;
        } else if (xp < x) {
            ys = 0;
            ye = h - 1;
        }
        xs = std::min(xs, x);
        xe = std::max(xe, x);
        ys = std::min(ys, y);
        ye = std::max(ye, y);
    }
    out[0] = xs;
    out[1] = ys;
    out[2] = static_cast<int64_t>(xe) - xs + 1;
    out[3] = static_cast<int64_t>(ye) - ys + 1;
}

std::string_view text_of(const py::handle& counts) {
    if (PyBytes_Check(counts.ptr())) {
        char* data = nullptr;
        Py_ssize_t size = 0;
        PyBytes_AsStringAndSize(counts.ptr(), &data, &size);
        return {data, static_cast<size_t>(size)};
    }
    if (PyUnicode_Check(counts.ptr()) && PyUnicode_IS_ASCII(counts.ptr())) {
        Py_ssize_t size = 0;
        const char* data = PyUnicode_AsUTF8AndSize(counts.ptr(), &size);
        return {data, static_cast<size_t>(size)};
    }
    throw std::domain_error("counts that are not ASCII");
}

// (boxes (N, 4) x0 y0 x1 y1, areas (N,), crops) of N compressed RLEs of one image size, as
// segcontrast.data.masks.crops_from_rles returns them; None when one does not decode.
py::object decode_rles(const py::sequence& counts, int64_t height, int64_t width) {
    const size_t n = counts.size();
    Int64Array boxes({static_cast<py::ssize_t>(n), py::ssize_t{4}});
    Int64Array areas({static_cast<py::ssize_t>(n)});
    int64_t* bp = boxes.mutable_data();
    int64_t* ap = areas.mutable_data();
    py::list crops(n);
    std::vector<int64_t> runs;
    for (size_t i = 0; i < n; ++i) {
        std::string_view text;
        try {
            text = text_of(counts[i]);
        } catch (const std::domain_error&) {
            return py::none();
        }
        if (!parse_counts(text, runs)) return py::none();
        int64_t total = 0, area = 0;
        for (size_t j = 0; j < runs.size(); ++j) {
            total += runs[j];
            if (j % 2) area += runs[j];
        }
        if (!runs.empty() && total != height * width) return py::none();
        int64_t bbox[4];
        coco_bbox(runs, static_cast<uint32_t>(height), static_cast<uint32_t>(width), bbox);
        int64_t* box = bp + 4 * i;
        if (area == 0) {
            box[0] = box[1] = box[2] = box[3] = 0;
        } else {
            box[0] = bbox[0];
            box[1] = bbox[1];
            box[2] = bbox[0] + bbox[2];
            box[3] = bbox[1] + bbox[3];
            if (box[2] > width || box[3] > height) return py::none();
        }
        ap[i] = area;
        const int64_t ch = box[3] - box[1], cw = box[2] - box[0];
        py::array_t<bool> crop({ch, cw});
        auto* out = reinterpret_cast<uint8_t*>(crop.mutable_data());
        std::memset(out, 0, static_cast<size_t>(ch * cw));
        int64_t start = 0;
        for (size_t j = 0; j < runs.size(); ++j) {
            const int64_t end = start + runs[j];
            if (j % 2 && area) {
                // one column segment at a time: rows row0..row0 + len of column col
                for (int64_t p = start; p < end;) {
                    const int64_t col = p / height, row = p % height;
                    const int64_t len = std::min(end - p, height - row);
                    if (col < box[0] || col >= box[2] || row < box[1] || row + len > box[3])
                        return py::none();
                    uint8_t* dst = out + (row - box[1]) * cw + (col - box[0]);
                    for (int64_t r = 0; r < len; ++r) dst[r * cw] = 1;
                    p += len;
                }
            }
            start = end;
        }
        crops[i] = std::move(crop);
    }
    return py::make_tuple(boxes, areas, crops);
}

}  // namespace

void register_rle(py::module_& m) {
    m.def("decode_rles", &decode_rles, py::arg("counts"), py::arg("height"), py::arg("width"),
          "Compressed RLE counts of one image size -> (boxes, areas, crops), or None when one "
          "does not decode.");
}

}  // namespace segcontrast
