#!/usr/bin/env python
"""The figures of the README's reliability section, measured by running the tests behind them.

    python bench/reliability_report.py               # print the figures
    python bench/reliability_report.py --write-docs  # also write them into README.md

Runs the bad-input corpus tests (tests/data/test_corpus.py, test_corpus_training.py), the
hypothesis property tests of the validator and the evaluator, the tests of the tools' answers to
bad use (issue 12: unusable weights, URLs, output folders, configs, images; a second run into a
busy OUTPUT_DIR; logging; class names), and the kill -9 / --resume test, then counts what passed
from pytest's JUnit XML and hypothesis' statistics.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_START = "<!-- reliability:start -->"
README_END = "<!-- reliability:end -->"
TESTS = {
    "corpus": ["tests/data/test_corpus.py::test_validation_gives_the_expected_outcome",
               "tests/data/test_corpus.py::test_error_cases_stop_registration_with_a_clear_message",
               "tests/data/test_corpus.py::test_tool_main_exits_2_naming_file_and_ids"],
    "corpus_training": ["tests/data/test_corpus_training.py"],
    "properties": ["tests/data/test_validator_properties.py",
                   "tests/evaluation/test_properties.py"],
    "resume": ["tests/tools/test_train_net.py::"
               "test_kill_9_then_resume_ends_like_an_uninterrupted_run"],
    "tools": ["tests/tools/test_reliability.py", "tests/engine/test_output_dir_lock.py",
              "tests/engine/test_weights_and_classes.py", "tests/engine/test_logging_setup.py",
              "tests/data/test_ids_names_and_files.py", "tests/data/test_bit_depth.py",
              "tests/utils/test_known_warnings.py", "tests/tools/test_config_values.py"],
    # issue 19: nothing a user owns is deleted, no file scored against the wrong images, real
    # files of every framework score, limits, Ctrl-C
    "round3": ["tests/tools/test_evaluate_output.py", "tests/tools/test_predict_outputs.py",
               "tests/tools/test_evaluate_ap_area.py", "tests/evaluation/test_ap_area.py",
               "tests/tools/test_evaluate_image_matching.py",
               "tests/evaluation/test_results_images.py",
               "tests/tools/test_evaluate_real_files.py", "tests/tools/test_input_limits.py",
               "tests/tools/test_ctrl_c_predict_and_tune.py"],
}


def _corpus_cases() -> Counter:
    path = REPO / "tests" / "data" / "make_corpus.py"
    spec = importlib.util.spec_from_file_location("make_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return Counter(case.outcome for case in module.CASES)


def _run(nodes: list[str], junit: Path, extra: tuple[str, ...] = ()) -> tuple[Counter, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         *extra, *nodes],
        cwd=REPO, capture_output=True, text=True,
    )
    counts: Counter = Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        counts[outcome] += 1
    return counts, result.stdout


def measure() -> str:
    cases = _corpus_cases()
    with tempfile.TemporaryDirectory() as tmp:
        corpus, _ = _run(TESTS["corpus"], Path(tmp) / "corpus.xml")
        training, _ = _run(TESTS["corpus_training"], Path(tmp) / "training.xml")
        properties, text = _run(TESTS["properties"], Path(tmp) / "properties.xml",
                                ("--hypothesis-show-statistics",))
        resume, _ = _run(TESTS["resume"], Path(tmp) / "resume.xml")
        tools, _ = _run(TESTS["tools"], Path(tmp) / "tools.xml")
        round3, _ = _run(TESTS["round3"], Path(tmp) / "round3.xml")
    # Hypothesis' statistics: "- 40 passing, 0 failing, and 0 invalid test cases" per phase.
    examples = sum(int(n) for n in re.findall(r"(\d+) passing,", text))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing,", text))
    total_cases = sum(cases.values())
    per_case_checks = sum(corpus.values())
    return "\n".join([
        f"Measured by `python bench/reliability_report.py --write-docs` on "
        f"{time.strftime('%Y-%m-%d')}:",
        "",
        f"- **Bad-input corpus** (`tests/data/make_corpus.py`): {total_cases} cases "
        f"({cases['works']} must work, {cases['dropped']} must drop items with a count, "
        f"{cases['changed']} must be corrected with a count, "
        f"{cases['error']} must stop with a clear error naming the file and ids). "
        f"{corpus['passed']} of {per_case_checks} per-case checks pass (the expected outcome "
        "through the validator, through registration, and through `tools/validate_dataset.py`).",
        f"- **Usable cases train and evaluate**: {training['passed']} of {sum(training.values())}"
        " (one training step of a Mask R-CNN, then inference and the contrast evaluator).",
        f"- **Property tests** (hypothesis, validator and evaluator): {properties['passed']} of "
        f"{sum(properties.values())} pass, {examples} generated examples run, "
        f"{failing} failing.",
        f"- **Bad use of the tools** (unreadable or non-checkpoint weights, an offline model-zoo "
        f"URL, yaml errors, unusable output folders, a schedule past `SOLVER.MAX_ITER`, "
        f"unreadable images, a second run into a busy `OUTPUT_DIR`; reports and notes on stdout "
        f"and in `log.txt`; class names and ids from the weights; ints at float keys, flags after "
        f"the overrides): {tools['passed']} of {sum(tools.values())} checks pass.",
        f"- **Nothing you own is lost, no file is scored against the wrong images**: "
        f"`segcontrast evaluate --output` replaces only its own folders (one run at a time, a "
        f"recoverable swap), `predict` never overwrites an input or a file it did not write, "
        f"Ctrl-C prints one line and leaves complete files; APs/APm/APl as Detectron2's "
        f"COCOEvaluator; Ultralytics' file stems, Roboflow's placeholder category, 300 results "
        f"per image, integral float ids, size limits: {round3['passed']} of "
        f"{sum(round3.values())} checks pass.",
        f"- **Crash and resume**: `kill -9` of a training run after its second checkpoint, then "
        f"`--resume`, ends at the same final iteration as an uninterrupted run: "
        f"{'passed' if resume['passed'] and not resume['failed'] else 'FAILED'}.",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="write into README.md")
    args = parser.parse_args()
    text = measure()
    print(text)
    if args.write_docs:
        readme = REPO / "README.md"
        content = readme.read_text()
        start, end = content.index(README_START), content.index(README_END)
        readme.write_text(content[: start + len(README_START)] + "\n" + text + "\n"
                          + content[end:])
        print("reliability: README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
