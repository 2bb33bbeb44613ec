"""The whole-process benchmark's arithmetic, verdicts and tables, on made-up runs.

bench/bench_whole_process.py takes many minutes; what it concludes must still follow from its
numbers. These tests feed it runs whose answer is known (no timing is measured here), check how
it attributes time to parts with a fake clock, and check the dense workload generator.
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_whole_process",
                                                  REPO / "bench" / "bench_whole_process.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_whole_process"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_whole_process", None)


def _run(bench, seconds, peak=100.0, code=0, stats=None, error=""):
    return bench.Run(seconds=seconds, peak_mb=peak, cpu_seconds=seconds, returncode=code,
                     stats=stats, error=error)


def _summary(bench, seconds, peak=100.0):
    return bench.summarize_runs([_run(bench, seconds, peak)])


def test_summaries_are_medians_of_the_runs_that_exited_0(bench):
    runs = [_run(bench, 3.0, 300), _run(bench, 1.0, 100), _run(bench, 2.0, 250),
            _run(bench, 0.1, 10, code=1, error="boom")]
    s = bench.summarize_runs(runs)
    assert (s.seconds, s.seconds_min, s.seconds_max) == (2.0, 1.0, 3.0)
    assert (s.peak_mb, s.peak_mb_min, s.peak_mb_max) == (250, 100, 300)
    assert s.rounds == 3
    failed = [_run(bench, 1.0, code=2, error="error: bad file")]
    assert bench.summarize_runs(failed) is None
    assert bench._failure(failed) == "failed: error: bad file"


def test_verdicts_follow_the_medians(bench):
    ours, pyco = _summary(bench, 14.3, 935), _summary(bench, 1.65, 587)
    assert bench.verdict("200 images", ours, pyco, "pycocotools") == (
        "200 images: ours 14.3 s vs pycocotools 1.65 s: 8.7x slower: NOT MET")
    assert bench.verdict("200 images", pyco, ours, "x").endswith("8.67x faster: MET")
    assert bench.verdict("5,000 images", ours, pyco, "pycocotools", kind="memory") == (
        "5,000 images: ours peak 935 MB vs pycocotools 587 MB: 1.59x as much: NOT MET")
    equal = bench.verdict("dense", pyco, _summary(bench, 1.65), "f", required=False)
    assert equal.endswith(": within (reported)")
    assert bench.verdict("dense", None, pyco, "f").endswith("ours did not run: NO VERDICT")


def test_compare_tables_give_a_verdict_per_target_and_name_failures(bench):
    def workload(name, images):
        return bench.Workload(name=name, title=f"title {name}", gt="g", results="r",
                              images=images, gt_objects=10 * images,
                              results_count=20 * images, results_mb=1.0)

    workloads = [workload("200", 200), workload("5000", 5000), workload("dense", 1000)]
    ap = [50.0, 70.0, 55.0, 30.0, 50.0, 60.0]
    times = {"pycocotools": 2.0, "faster_coco_eval": 1.0, "hotcoco": 0.5, "ours": 4.0}
    runs = {}
    for w in workloads:
        runs[w.name] = {c: [_run(bench, t * r, 500 if c == "ours" else 400, stats=ap)
                            for r in (1.0, 1.1, 0.9)] for c, t in times.items()}
    runs["dense"]["hotcoco"] = [_run(bench, 1.0, code=1, error="ImportError: hotcoco")]
    # ours with --ap-area box equals pycocotools on 200 images; on 5000 its APl is off by 2
    box = {"200": ap, "5000": [*ap[:5], ap[5] + 2.0]}
    for w in workloads:  # ours' default: APs by mask areas, 3 points off pycocotools' boxes
        for run in runs[w.name]["ours"]:
            run.stats = [*ap[:3], ap[3] + 3.0, *ap[4:]]
    text = bench.compare_tables(workloads, runs, 3, ["python", "tools/evaluate.py"], box)
    assert "- default tool no slower than pycocotools (AP alone): 200 images: ours 4.00 s vs " \
           "pycocotools 2.00 s: 2.0x slower: NOT MET" in text
    assert "5,000 images: ours 4.00 s vs faster-coco-eval 1.00 s: 4.0x slower: NOT MET" in text
    assert "5,000 images: ours peak 500 MB vs pycocotools 400 MB: 1.25x as much: NOT MET" in text
    assert "dense: ours 4.00 s vs faster-coco-eval 1.00 s: 4.0x slower: outside (reported)" \
        in text
    assert "failed: ImportError: hotcoco" in text
    assert "| title 200: 4,000 results | 2.00 s / 400 MB | 1.00 s / 400 MB | 0.50 s / 400 MB " \
           "| 4.00 s / 500 MB | 8.0x |" in text
    # the area-free numbers of the default run; all six of the --ap-area box run
    assert "SegContrast 0.0e+00 over AP, AP50, AP75 (its APs" in text
    assert "pycocotools takes the results' boxes) and 0.0e+00 over all six with --ap-area box" \
        in text.split("- 5000:")[0]
    assert "and 2.0e+00 over all six with --ap-area box" in text.split("- 5000:")[1]
    assert "over all six" not in text.split("- dense:")[1]  # no run with boxes there
    assert "| 200 | pycocotools | 2.00 | 1.80 to 2.20 |" in text


def test_startup_and_scaling_tables(bench):
    runs = {"ours: python tools/evaluate.py --help": [_run(bench, 0.4), _run(bench, 0.6),
                                                      _run(bench, 0.45)],
            "ours: a 2-image file": [_run(bench, 3.0)],
            'python -c "import hotcoco"': [_run(bench, 0.2)]}
    text = bench.startup_table(runs, 3)
    assert "- ours: python tools/evaluate.py --help: 0.45 s vs 0.5 s: MET" in text
    assert "- ours: a 2-image file: 3.00 s vs 0.5 s: NOT MET" in text
    assert "hotcoco\": " not in text  # peers get rows, not verdicts

    def sized(images, seconds, peak):
        w = bench.Workload(name=str(images), title="", gt="", results="", images=images,
                           gt_objects=15 * images, results_count=17 * images, results_mb=0)
        return w, _summary(bench, seconds, peak), []

    table = bench.scaling_table([sized(100, 11.0, 900), sized(1000, 20.0, 1080)])
    # 9 s more for 900 more images: 10 ms each; 180 MB more: 200 MB per 1,000 images
    assert "| 1,000 | 17,000 | 15,000 | 20.00 (20.00 to 20.00) | 20.0 | 20.0 | 10.0 | 1,080 | " \
           "200 |" in table
    assert "| 100 | 1,700 | 1,500 | 11.00 (11.00 to 11.00) | 11.0 | 110.0 |  | 900 |  |" in table


def test_rounds_rotate_the_order(bench):
    assert bench.rotated(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert bench.rotated(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_a_cached_workload_is_reused_only_with_the_same_key(bench, tmp_path):
    key = {"generator": "dense", "images": 3}
    (tmp_path / "gt.json").write_text("{}")
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / "workload.json").write_text(json.dumps({"key": key, "images": 3}))
    assert bench.cached(tmp_path, key)["images"] == 3
    assert bench.cached(tmp_path, {**key, "images": 4}) is None
    (tmp_path / "results.json").unlink()
    assert bench.cached(tmp_path, key) is None


FAKE_PACKAGE = '''
NOW = [0.0]


def outer():
    NOW[0] += 1
    inner()
    leaf()
    Thing.build()
    Thing().method()
    NOW[0] += 1


def leaf():
    NOW[0] += 2
    inner()


def inner():
    NOW[0] += 3


class Thing:
    @classmethod
    def build(cls):
        NOW[0] += 4
        return cls

    def method(self):
        NOW[0] += 5
'''


@pytest.fixture
def fake_package():
    """fakepkg.sub.alpha defines the functions; fakepkg.beta imports ``inner`` by name."""
    names = ["fakepkg", "fakepkg.sub", "fakepkg.sub.alpha", "fakepkg.beta"]
    modules = {name: types.ModuleType(name) for name in names}
    sys.modules.update(modules)
    try:
        exec(FAKE_PACKAGE, vars(modules["fakepkg.sub.alpha"]))
        exec("from fakepkg.sub.alpha import NOW, inner\n\ndef call():\n    inner()\n",
             vars(modules["fakepkg.beta"]))
        yield modules
    finally:
        for name in names:
            sys.modules.pop(name, None)


def test_part_clock_gives_each_part_its_own_time(bench, fake_package):
    alpha, beta = fake_package["fakepkg.sub.alpha"], fake_package["fakepkg.beta"]
    parts = (
        bench.Part("outer", ("alpha:outer",), container=True),
        bench.Part("leaf", ("alpha:leaf",)),
        bench.Part("inner", ("alpha:inner",), unless_inside=("skip",)),
        bench.Part("things", ("alpha:Thing.build", "alpha:Thing.method")),
        bench.Part("moved", ("alpha:gone", "nomodule:outer")),
    )
    clock = bench.PartClock(lambda: alpha.NOW[0])
    unmatched = bench.install(clock, parts, "fakepkg")
    assert unmatched == {"moved": ["alpha:gone", "nomodule:outer"]}
    assert bench.unmatched_functions(parts, "fakepkg") == unmatched
    alpha.outer()
    # outer: 1 + 1 of its own; inner 3 (called by outer; the call inside leaf is leaf's);
    # leaf 2 + 3; the class's two methods 4 + 5
    assert clock.seconds == {"outer": 2, "inner": 3, "leaf": 5, "things": 9}
    assert clock.calls == {"outer": 1, "inner": 1, "leaf": 1, "things": 2}
    beta.call()  # the copy of the name that `from ... import inner` made is timed too
    assert clock.seconds["inner"] == 6
    assert alpha.Thing.build() is alpha.Thing  # still a classmethod


def test_parts_name_functions_that_exist(bench):
    """PARTS must follow the package: update it when modules or functions move."""
    import importlib

    importlib.import_module(bench.TOOL_MODULE)
    bench.import_part_modules(bench.PACKAGE, bench.PARTS)
    assert bench.unmatched_functions(bench.PARTS, bench.PACKAGE) == {}


def test_dense_workload_is_deterministic_and_shaped_like_detectron2s(tmp_path):
    from pycocotools.coco import COCO

    from tests.evaluation.dense_results import MAX_DETECTIONS, MIN_SCORE, write_dense_files

    gt, results, _ = write_dense_files(tmp_path / "a", 3)
    _, again, _ = write_dense_files(tmp_path / "b", 3)
    assert results.read_bytes() == again.read_bytes()
    loaded = json.loads(results.read_text())
    by_image = {}
    for r in loaded:
        by_image.setdefault(r["image_id"], []).append(r["score"])
        assert isinstance(r["segmentation"]["counts"], str) and len(r["bbox"]) == 4
    assert sorted(by_image) == [1, 2, 3]
    for scores in by_image.values():
        assert 50 <= len(scores) <= MAX_DETECTIONS
        assert min(scores) >= MIN_SCORE and scores == sorted(scores, reverse=True)
    coco = COCO(str(gt))
    assert len(coco.loadRes(str(results)).anns) == len(loaded)  # pycocotools reads it


def test_breakdown_table_shows_parts_that_matched_nothing(bench):
    w = bench.Workload(name="200", title="", gt="", results="", images=200, gt_objects=0,
                       results_count=0, results_mb=0)
    first = bench.PARTS[1].label
    result = {"returncode": 0, "import_seconds": 9.0, "lazy_import_seconds": 0.5,
              "total_seconds": 10.0, "seconds": {first: 2.5}, "calls": {first: 1},
              "unmatched": {bench.PARTS[2].label: ["moved:function"]}}
    table = bench.breakdown_table({"200": result}, [w])
    assert f"| {first} | 2.500 (25.0%) |" in table
    assert f"| {bench.PARTS[2].label} | NOT FOUND: moved:function; 0.000 (0.0%) |" in table
    assert "matched nothing for moved:function" in table
