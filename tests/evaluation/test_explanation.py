"""The sentence every report opens with (segcontrast.evaluation.explanation.explain): built from
the accounting on both sides, the lower side first; a type is called invisible to a side only
where fixing it gains that side nothing; counts from the one error assignment, in English."""

import re

import pytest
from segcontrast.evaluation.catalog import ERROR_TYPE_DEFS, ERROR_TYPES, NEGLIGIBLE, error_type
from segcontrast.evaluation.explanation import explain, signed

from tests.evaluation.helpers import box_mask, evaluate, image_dict, instances, register

SIDES = ("semantic_mIoU", "instance_mIoU")


def _results(sem, inst, rows, *, pq=None, ap=None, painted=None):
    """Result groups as summarize() gives them: rows is {type: (count, d_sem, d_inst[, d_pq,
    d_ap])}; every other type occurs nowhere (count 0, deltas 0)."""
    contrast = {"matched": 10, "false_positives": 0}
    acc = {"semantic_mIoU": painted if painted is not None else sem, "instance_mIoU": inst}
    if pq is not None:
        acc["PQ"], acc["AP"] = pq, ap
    for name in ERROR_TYPES:
        count, *deltas = rows.get(name, (0, 0.0, 0.0, 0.0, 0.0))
        deltas = list(deltas) + [0.0] * (4 - len(deltas))
        contrast[name] = float(count)
        acc[f"count-{name}"] = float(count)
        for key, value in zip(("semantic_mIoU", "instance_mIoU", "PQ", "AP"), deltas,
                              strict=True):
            if key in acc:
                acc[f"delta_{key}-{name}"] = float(value)
    out = {"semantic": {"mIoU": sem}, "instance": {"mIoU": inst}, "contrast": contrast,
           "accounting": acc}
    if painted is not None:
        out["semantic_from_instances"] = {"mIoU": painted}
    return out


def test_the_brain_tumour_case_names_the_false_positives_that_cost_the_semantic_side():
    # the numbers of the results file the issue quotes (Mask R-CNN on Roboflow ground truth)
    res = _results(60.8, 84.0, {"background": (127, 24.1, 0.0), "mask_quality": (60, 7.4, 9.3),
                                "split": (8, 0.0, 1.2), "missed": (5, 1.1, 2.4)})
    text = explain(res)
    assert text.startswith(
        "Semantic mIoU 60.8 vs instance mIoU 84.0 (-23.2 points): semantic mIoU loses most to "
        "127 predictions on no object (+24.1 if removed; instance mIoU +0.0: it scores each "
        "object by its match, and these predictions match no object) and 60 imprecise masks "
        "(+7.4 if exact); instance mIoU loses most to 60 imprecise masks (+9.3 if exact) and "
        "5 missed objects (+2.4 if found).")
    assert "Only the instance side" not in text and "only the instance side" not in text


@pytest.mark.parametrize("kind", ERROR_TYPE_DEFS, ids=lambda d: d.name)
@pytest.mark.parametrize("side", SIDES)
def test_each_type_dominating_each_side_is_named_first_there(kind, side):
    other = SIDES[1 - SIDES.index(side)]
    gains = {side: 12.5, other: 3.0}
    # the dominated side is the lower one; mask quality costs both a little
    res = _results(50.0 if side == "semantic_mIoU" else 70.0,
                   50.0 if side == "instance_mIoU" else 70.0,
                   {kind.name: (3, gains["semantic_mIoU"], gains["instance_mIoU"]),
                    "mask_quality" if kind.name != "mask_quality" else "missed":
                        (4, 1.0, 1.0)})
    text = explain(res)
    label = side.replace("_", " ")
    first = text.split(": ", 1)[1]
    assert first.startswith(f"{label} loses most to 3 {kind.plural} (+12.5 {kind.fix}; "
                            f"{other.replace('_', ' ')} +3.0 too)"), text
    # not negligible on the other side: never called invisible there
    assert kind.why_invisible(other) == "" or kind.why_invisible(other) not in text


@pytest.mark.parametrize("kind", [d for d in ERROR_TYPE_DEFS if d.invisible_to],
                         ids=lambda d: d.name)
def test_a_type_is_called_invisible_only_where_its_gain_rounds_to_nothing(kind):
    for blind, why in kind.invisible_to:
        seen = SIDES[1 - SIDES.index(blind)]
        for cost, called_invisible in ((0.04, True), (-0.04, True), (0.3, False)):
            deltas = {seen: 9.0, blind: cost}
            res = _results(40.0 if seen == "semantic_mIoU" else 80.0,
                           40.0 if seen == "instance_mIoU" else 80.0,
                           {kind.name: (2, deltas["semantic_mIoU"], deltas["instance_mIoU"])})
            text = explain(res)
            assert (why in text) is called_invisible, (blind, cost, text)
            assert "-0.0" not in text
            shown = f"{blind.replace('_', ' ')} {signed(cost)}"
            assert shown in text, text


def test_counts_take_the_singular_and_no_change_is_never_negative_zero():
    res = _results(70.0, 70.04, {"split": (1, 0.0, 5.0), "merged": (2, 0.0, 3.0),
                                 "missed": (1, 0.02, 1.0)})
    text = explain(res)
    assert "1 split object " in text and "2 merged predictions " in text
    assert "1 split objects" not in text and "objects were" not in text
    assert "(0.0 points)" in text and "-0.0" not in text
    # a side no fix raises
    assert "no single fix would raise semantic mIoU" in text
    res = _results(70.0, 70.0, {"missed": (2, 3.0, 3.0)})
    assert "2 missed objects (+3.0 if found" in explain(res)


def test_pq_and_ap_when_asked_and_the_painted_instances_named():
    res = _results(80.0, 50.0, {"merged": (4, 0.0, 20.0, 30.0, 25.0),
                                "mask_quality": (9, 4.0, 5.0, 6.0, 40.0)},
                   pq=55.0, ap=30.0, painted=79.0)
    text = explain(res, also=("PQ", "AP"))
    assert text.startswith("Semantic mIoU 80.0 from the semantic head and 79.0 from the "
                           "instances painted as labels vs instance mIoU 50.0")
    assert ("instance mIoU loses most to 4 merged predictions (+20.0 if separated; semantic "
            "mIoU of the painted instances +0.0: it pools each class's pixels") in text
    assert "; PQ loses most to 4 merged predictions (+30.0 if separated)" in text
    assert "; mask AP loses most to 9 imprecise masks (+40.0 if exact)" in text
    assert "low-score" not in text


def test_without_the_accounting_the_counts_are_listed_and_nothing_is_claimed():
    res = _results(60.0, 50.0, {"split": (1, 0, 0), "background": (3, 0, 0),
                                "low_score": (7, 0, 0)})
    del res["accounting"]
    text = explain(res)
    assert text == ("Semantic mIoU 60.0 vs instance mIoU 50.0 (+10.0 points): errors by type: "
                    "1 split object, 3 predictions on no object (the gap accounting, "
                    "accounting=True, says what fixing each gains on each side).")


H, W = 40, 60


def test_on_a_scored_image_where_false_positives_dominate_the_semantic_side():
    # two objects found exactly (instance mIoU 100) and three large predictions on the
    # background: the semantic side pools their pixels with the objects'
    a, b = box_mask(H, W, 0, 0, 10, 10), box_mask(H, W, 20, 0, 30, 10)
    fps = [box_mask(H, W, 0, 20, 15, 35), box_mask(H, W, 20, 20, 38, 38),
           box_mask(H, W, 0, 45, 30, 58)]
    name = register([image_dict(1, [a, b], [0, 0])], ["x"])
    res = evaluate(name, {1: instances([a, b, *fps], [0] * 5, [0.9, 0.9, 0.8, 0.8, 0.8])})
    assert res["instance"]["mIoU"] == 100.0 and res["semantic"]["mIoU"] < 30
    assert res["contrast"]["background"] == res["accounting"]["count-background"] == 3
    text = explain(res)
    gain = res["accounting"]["delta_semantic_mIoU-background"]
    assert text.startswith(
        f"Semantic mIoU {res['semantic']['mIoU']:.1f} vs instance mIoU 100.0 "
        f"({signed(res['semantic']['mIoU'] - 100)} points): semantic mIoU loses most to 3 "
        f"predictions on no object ({signed(gain)} if removed; instance mIoU +0.0: it scores "
        "each object by its match, and these predictions match no object)")
    assert "no single fix would raise instance mIoU" in text


def test_every_number_in_the_sentence_is_a_count_or_a_delta_of_the_result():
    res = _results(61.2, 48.7, {"merged": (3, 0.01, 9.0), "missed": (11, 6.0, 7.5),
                                "class_confusion": (2, 2.0, 1.0)})
    text = explain(res)
    numbers = set(re.findall(r"[-+]?\d+\.\d|\b\d+\b", text))
    allowed = {"61.2", "48.7", "+12.5", "3", "11", "2", "+9.0", "+0.0", "+6.0", "+7.5",
               "+2.0", "+1.0"}
    assert numbers <= allowed, numbers - allowed
    assert NEGLIGIBLE == 0.05 and error_type("merged").noun(1) == "1 merged prediction"
