// The gap accounting's fixed prediction lists (fixes.hpp): fixes.py's _ops, _all_ops and
// _apply, made without a Python object per entry.
#include "fixes.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace segcontrast {
namespace {

// An entry a fix makes (fixes._New): an existing mask (a prediction's or an object's) or one
// made here, whose bytes the variant holds.
struct Entry {
    Crop crop;
    int64_t area = 0;  // the pixel count as given; its AP area too
    int64_t cls = 0;
    double score = 0.0;
    int64_t mask_source = -1;
    int64_t gt_copy = -1;
};

// The changes of one fix to the original list (fixes._Ops).
struct Ops {
    std::vector<uint8_t> gone;  // (M,) removed or replaced
    // replacements in the order made, each with the list index whose place it takes
    std::vector<std::pair<int64_t, Entry>> replace;
    std::vector<Entry> add;

    explicit Ops(int64_t m) : gone(static_cast<size_t>(m), 0) {}
    // A replaced prediction is gone even when nothing takes its place (fixes._apply).
    void replace_with(int64_t i, const Entry& e) {
        gone[static_cast<size_t>(i)] = 1;
        replace.emplace_back(i, e);
    }
};

void reset(Variant& v, int64_t row, bool exact_copies) {
    v.row = row;
    v.exact_copies = exact_copies;
    v.masks.clear();
    v.classes.clear();
    v.scores.clear();
    v.ap_areas.clear();
    v.source.clear();
    v.mask_source.clear();
    v.gt_copy.clear();
    v.touched.clear();
    v.touched_boxes.clear();
    v.pixels.clear();
}

// The tight crop of a canvas (fixes._tight): its bytes kept by the variant; no pixels give
// the empty mask (zero box, no bytes), as MaskCrops has it.
Entry tight(Variant& v, const std::vector<uint8_t>& canvas, const Box& at) {
    const int64_t w = at.width(), h = at.height();
    int64_t r0 = h, r1 = 0, c0 = w, c1 = 0;
    for (int64_t y = 0; y < h; ++y) {
        const uint8_t* row = canvas.data() + y * w;
        for (int64_t x = 0; x < w; ++x)
            if (row[x]) {
                r0 = std::min(r0, y);
                r1 = y + 1;
                c0 = std::min(c0, x);
                c1 = std::max(c1, x + 1);
            }
    }
    Entry e;
    if (r1 <= r0) return e;
    const int64_t tw = c1 - c0, th = r1 - r0;
    std::vector<uint8_t>& bytes = v.pixels.emplace_back(static_cast<size_t>(tw * th));
    int64_t area = 0;
    for (int64_t y = 0; y < th; ++y) {
        const uint8_t* src = canvas.data() + (r0 + y) * w + c0;
        uint8_t* dst = bytes.data() + y * tw;
        for (int64_t x = 0; x < tw; ++x) area += dst[x] = src[x] ? 1 : 0;
    }
    e.crop = Crop{{at.x0 + c0, at.y0 + r0, at.x0 + c1, at.y0 + r1}, bytes.data(), tw, area};
    e.area = area;
    return e;
}

// fixes._intersection: the pixels of both masks. A mask without pixels is skipped, not read:
// MaskCrops gives it a zero box, and its crop need not match any other box.
Entry intersection(Variant& v, const Crop& a, const Crop& b) {
    const Box r = intersect(a.box, b.box);
    if (a.area <= 0 || b.area <= 0 || r.x1 <= r.x0 || r.y1 <= r.y0) return Entry{};
    const int64_t w = r.width(), h = r.height();
    std::vector<uint8_t> canvas(static_cast<size_t>(w * h));
    for (int64_t y = 0; y < h; ++y) {
        const uint8_t* pa = a.data + (r.y0 + y - a.box.y0) * a.stride + (r.x0 - a.box.x0);
        const uint8_t* pb = b.data + (r.y0 + y - b.box.y0) * b.stride + (r.x0 - b.box.x0);
        uint8_t* dst = canvas.data() + y * w;
        for (int64_t x = 0; x < w; ++x) dst[x] = pa[x] & pb[x];
    }
    return tight(v, canvas, r);
}

// fixes._union: the pixels of any of the masks (those without pixels skipped).
Entry union_of(Variant& v, const std::vector<const Crop*>& masks) {
    bool any = false;
    Box all{0, 0, 0, 0};
    for (const Crop* c : masks) {
        if (c->area <= 0) continue;
        all = any ? Box{std::min(all.x0, c->box.x0), std::min(all.y0, c->box.y0),
                        std::max(all.x1, c->box.x1), std::max(all.y1, c->box.y1)}
                  : c->box;
        any = true;
    }
    if (!any || all.x1 <= all.x0 || all.y1 <= all.y0) return Entry{};
    const int64_t w = all.width();
    std::vector<uint8_t> canvas(static_cast<size_t>(w * all.height()), 0);
    for (const Crop* c : masks) {
        if (c->area <= 0) continue;
        for (int64_t y = 0; y < c->box.height(); ++y) {
            const uint8_t* src = c->data + y * c->stride;
            uint8_t* dst = canvas.data() + (c->box.y0 - all.y0 + y) * w + (c->box.x0 - all.x0);
            for (int64_t x = 0; x < c->box.width(); ++x) dst[x] |= src[x];
        }
    }
    return tight(v, canvas, all);
}

Entry with(Entry e, int64_t cls, double score) {
    e.cls = cls;
    e.score = score;
    return e;
}

// fixes._copy_of: object j's mask.
Entry copy_of(const FixInputs& in, int64_t j, int64_t cls, double score) {
    Entry e;
    e.crop = in.objects[static_cast<size_t>(j)];
    e.area = in.object_areas[static_cast<size_t>(j)];
    e.cls = cls;
    e.score = score;
    e.gt_copy = j;
    return e;
}

int64_t list_index(const FixInputs& in, int64_t k) { return in.keep[k]; }

// The original list's entry i, unchanged.
void put_original(const FixInputs& in, int64_t i, Variant& out) {
    out.masks.push_back((*in.pred)[static_cast<size_t>(i)]);
    out.classes.push_back(in.pred_classes[i]);
    out.scores.push_back(in.pred_scores[i]);
    out.ap_areas.push_back(in.pred_ap_areas[i]);
    out.source.push_back(i);
    out.mask_source.push_back(i);
    out.gt_copy.push_back(-1);
}

// fixes._apply on the original list: replacements in place (by list index, each index's in
// the order made), additions at the end; touched: the classes and boxes of the entries gone
// (by list index), then of the new ones.
void apply(const FixInputs& in, Ops& ops, Variant& out) {
    std::stable_sort(ops.replace.begin(), ops.replace.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    const auto put = [&](const Entry& e) {
        out.masks.push_back(e.crop);
        out.classes.push_back(e.cls);
        out.scores.push_back(e.score);
        out.ap_areas.push_back(static_cast<double>(e.area));
        out.source.push_back(-1);
        out.mask_source.push_back(e.mask_source);
        out.gt_copy.push_back(e.gt_copy);
        out.touched.push_back(e.cls);
    };
    size_t r = 0;
    for (int64_t i = 0; i < in.m; ++i) {
        if (!ops.gone[static_cast<size_t>(i)]) {
            put_original(in, i, out);
            continue;
        }
        out.touched.push_back(in.pred_classes[i]);
        out.touched_boxes.push_back((*in.pred)[static_cast<size_t>(i)].box);
        for (; r < ops.replace.size() && ops.replace[r].first == i; ++r) put(ops.replace[r].second);
    }
    for (const Entry& e : ops.add) put(e);
    for (const auto& [i, e] : ops.replace) out.touched_boxes.push_back(e.crop.box);
    for (const Entry& e : ops.add) out.touched_boxes.push_back(e.crop.box);
    std::sort(out.touched.begin(), out.touched.end());
    out.touched.erase(std::unique(out.touched.begin(), out.touched.end()), out.touched.end());
}

// The kept predictions of one row, in kept order.
template <typename F>
void each_of(const FixInputs& in, int64_t row, F&& f) {
    for (int64_t k = 0; k < in.n_keep; ++k)
        if (in.pred_type[k] == row) f(k);
}

// rank_order's first: the highest score, the earliest of equal ones.
int64_t first_ranked(const double* scores, const std::vector<int64_t>& index) {
    int64_t best = index.front();
    for (const int64_t i : index)
        if (scores[i] > scores[best]) best = i;
    return best;
}

}  // namespace

void fix_one(const FixInputs& in, int64_t row, Variant& out) {
    reset(out, row, false);
    Ops ops(in.m);
    switch (row) {
    case kMerged:
        each_of(in, row, [&](int64_t k) {
            const int64_t i = list_index(in, k);
            const Crop& mask = (*in.pred)[static_cast<size_t>(i)];
            const Span& objects = in.merged_objects[static_cast<size_t>(k)];
            // a prediction covering no object would be removed (an empty replacement)
            ops.gone[static_cast<size_t>(i)] = 1;
            for (int64_t q = 0; q < objects.size; ++q)
                ops.replace_with(i, with(intersection(out, mask, in.objects[static_cast<size_t>(
                                                                      objects.data[q])]),
                                         in.pred_classes[i], in.pred_scores[i]));
        });
        break;
    case kSplit: {
        std::vector<int64_t> members;
        std::vector<const Crop*> masks;
        for (const Span& pieces : in.split_pieces) {
            members.clear();
            masks.clear();
            for (int64_t q = 0; q < pieces.size; ++q) {
                members.push_back(list_index(in, pieces.data[q]));
                masks.push_back(&(*in.pred)[static_cast<size_t>(members.back())]);
            }
            const int64_t first = first_ranked(in.pred_scores, members);
            for (const int64_t i : members) ops.gone[static_cast<size_t>(i)] = 1;
            ops.replace_with(first, with(union_of(out, masks), in.pred_classes[first],
                                         in.pred_scores[first]));
        }
        break;
    }
    case kDuplicate:
    case kBackground:
    case kInCrowd:
        each_of(in, row, [&](int64_t k) { ops.gone[static_cast<size_t>(list_index(in, k))] = 1; });
        break;
    case kConfusion:
    case kLocalisation:
    case kMaskQuality:
        each_of(in, row, [&](int64_t k) {
            const int64_t i = list_index(in, k), j = in.pred_target[k];
            if (in.fix_removes[k]) {
                ops.gone[static_cast<size_t>(i)] = 1;
            } else if (row == kConfusion) {
                Entry e;
                e.crop = (*in.pred)[static_cast<size_t>(i)];
                e.area = in.pred_areas[i];
                e.cls = in.object_classes[static_cast<size_t>(j)];
                e.score = in.pred_scores[i];
                e.mask_source = i;  // an original prediction's mask is its own
                ops.replace_with(i, e);
            } else {
                ops.replace_with(i, copy_of(in, j, in.pred_classes[i], in.pred_scores[i]));
            }
        });
        break;
    case kMissed:
        for (int64_t j = 0; j < static_cast<int64_t>(in.objects.size()); ++j)
            if (in.gt_missed[j] && in.object_areas[static_cast<size_t>(j)] > 0)
                ops.add.push_back(copy_of(in, j, in.object_classes[static_cast<size_t>(j)],
                                          kAddedScore));
        break;
    default:
        throw std::invalid_argument("fix_one: not a row with a fix list");
    }
    apply(in, ops, out);
}

void fix_all(const FixInputs& in, Variant& out) {
    reset(out, kAll, true);
    const int64_t n = in.n_keep, g = static_cast<int64_t>(in.objects.size());
    std::vector<int64_t> order(static_cast<size_t>(n)), rank(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
        return in.pred_scores[in.keep[x]] > in.pred_scores[in.keep[y]];
    });
    for (int64_t p = 0; p < n; ++p) rank[static_cast<size_t>(order[p])] = p;
    // the kept prediction whose place each object's copy takes: its match, else the
    // highest-ranked candidate (merged, split, fixed onto it)
    std::vector<int64_t> owner(static_cast<size_t>(g), -1);
    for (int64_t k = 0; k < n; ++k)
        if (in.pred_match[k] >= 0) owner[static_cast<size_t>(in.pred_match[k])] = k;
    std::vector<std::pair<int64_t, int64_t>> candidates;  // (object, kept index)
    each_of(in, kMerged, [&](int64_t k) {
        const Span& objects = in.merged_objects[static_cast<size_t>(k)];
        for (int64_t q = 0; q < objects.size; ++q) candidates.emplace_back(objects.data[q], k);
    });
    for (size_t s = 0; s < in.split_pieces.size(); ++s) {
        const Span& pieces = in.split_pieces[s];
        int64_t best = pieces.data[0];
        for (int64_t q = 1; q < pieces.size; ++q)
            if (rank[static_cast<size_t>(pieces.data[q])] < rank[static_cast<size_t>(best)])
                best = pieces.data[q];
        candidates.emplace_back(in.split_objects[s], best);
    }
    for (int64_t k = 0; k < n; ++k)
        if ((in.pred_type[k] == kConfusion || in.pred_type[k] == kLocalisation) &&
            !in.fix_removes[k])
            candidates.emplace_back(in.pred_target[k], k);
    std::stable_sort(candidates.begin(), candidates.end(), [&](const auto& x, const auto& y) {
        return rank[static_cast<size_t>(x.second)] < rank[static_cast<size_t>(y.second)];
    });
    for (const auto& [j, k] : candidates)
        if (owner[static_cast<size_t>(j)] < 0) owner[static_cast<size_t>(j)] = k;
    Ops ops(in.m);
    std::fill(ops.gone.begin(), ops.gone.end(), 1);
    for (int64_t j = 0; j < g; ++j) {
        if (in.object_areas[static_cast<size_t>(j)] == 0) continue;
        const int64_t k = owner[static_cast<size_t>(j)];
        const int64_t cls = in.object_classes[static_cast<size_t>(j)];
        if (k < 0) {
            ops.add.push_back(copy_of(in, j, cls, kAddedScore));
            continue;
        }
        const int64_t i = list_index(in, k);
        ops.replace_with(i, copy_of(in, j, cls, in.pred_scores[i]));
    }
    apply(in, ops, out);
}

void low_score_variant(const FixInputs& in, Variant& out) {
    reset(out, kLowScore, false);
    std::vector<uint8_t> below(static_cast<size_t>(in.m), 1);
    for (int64_t k = 0; k < in.n_keep; ++k) {
        const int64_t i = in.keep[k];
        below[static_cast<size_t>(i)] = 0;
        put_original(in, i, out);
    }
    for (int64_t i = 0; i < in.m; ++i)
        if (below[static_cast<size_t>(i)]) out.touched.push_back(in.pred_classes[i]);
    std::sort(out.touched.begin(), out.touched.end());
    out.touched.erase(std::unique(out.touched.begin(), out.touched.end()), out.touched.end());
}

}  // namespace segcontrast
