"""What dataset validation found: problems, the report that collects them, and the error.

Every problem names the file, the image id and the annotation id where it applies, so that a
user can fix a bad COCO file from the message alone (an image is named by its id and its
``file_name``). Problems are ``fatal`` (the run must not start), ``dropped`` (the item is
removed from the loaded data and counted) or ``changed`` (the item is kept, changed as the
message says, and counted).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ..utils.errors import InputError

__all__ = [
    "log_corrections",
    "DatasetProblem",
    "DatasetValidationError",
    "Severity",
    "ValidationReport",
]

Severity = Literal["fatal", "dropped", "changed"]


@dataclass(frozen=True)
class DatasetProblem:
    """One problem in a dataset.

    Attributes:
        severity: "fatal" (stops the run), "dropped" (the item is left out, with a count) or
            "changed" (the item is kept, changed, with a count).
        code: a short stable identifier, e.g. "image_missing" (datasets/README.md lists them).
        message: what was expected and what was found.
        file: the annotation file (or the command-line argument) the problem is in.
        image_id: the image the problem belongs to, when there is one.
        annotation_id: the annotation the problem belongs to, when there is one.
        image_file: the ``file_name`` of that image, when the JSON gives one.
    """

    severity: Severity
    code: str
    message: str
    file: str
    image_id: Any = None
    annotation_id: Any = None
    image_file: str | None = None

    def location(self) -> str:
        """Where the problem is: ``file: image 3 ('a.png'), annotation 12``."""
        parts = []
        if self.image_id is not None:
            named = f" ({self.image_file!r})" if self.image_file else ""
            parts.append(f"image {self.image_id!r}{named}")
        if self.annotation_id is not None:
            parts.append(f"annotation {self.annotation_id!r}")
        return f"{self.file}: {', '.join(parts)}" if parts else self.file

    def format(self) -> str:
        """One line: severity, location and message."""
        return f"[{self.severity}] {self.location()}: {self.message}"


@dataclass
class ValidationReport:
    """Everything found in one COCO file, plus what its loaded data looks like.

    Attributes:
        json_file: the annotation file, as given.
        image_root: the image folder, as given.
        problems: every problem, in the order found.
        num_images: images in the file.
        num_annotations: annotations in the file.
        num_kept_annotations: annotations left after dropping the droppable ones.
        categories: ``(id, name)`` of each category that is a class, sorted by id.
        left_out_categories: category id -> why it is not a class (a category without
            annotations whose name another category has, such as Roboflow's placeholder).
        mask_format: "polygon" when every kept segmentation is a polygon, else "bitmask".
        bit_depths: number of image files per sample depth found ("8-bit RGB": 12, ...).
        image_files: image id -> its ``file_name`` (ids used once), to name images in messages.
    """

    json_file: str
    image_root: str
    problems: list[DatasetProblem] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0
    num_kept_annotations: int = 0
    categories: list[tuple[int, str]] = field(default_factory=list)
    left_out_categories: dict[int, str] = field(default_factory=dict)
    mask_format: str = "polygon"
    bit_depths: dict[str, int] = field(default_factory=dict)
    image_files: dict[Any, str] = field(default_factory=dict, repr=False)

    def add(self, severity: Severity, code: str, message: str, *, image_id: Any = None,
            annotation_id: Any = None, file: str | None = None) -> None:
        """Record a problem (in ``json_file`` unless ``file`` is given)."""
        image_file = self.image_files.get(image_id) if image_id is not None else None
        self.problems.append(
            DatasetProblem(severity, code, message, file or self.json_file, image_id,
                           annotation_id, image_file)
        )

    @property
    def fatal(self) -> list[DatasetProblem]:
        """The problems that stop the run."""
        return [p for p in self.problems if p.severity == "fatal"]

    @property
    def dropped(self) -> list[DatasetProblem]:
        """The problems whose item was left out of the loaded data."""
        return [p for p in self.problems if p.severity == "dropped"]

    @property
    def changed(self) -> list[DatasetProblem]:
        """The problems whose item was kept in a changed form (e.g. a renumbered id)."""
        return [p for p in self.problems if p.severity == "changed"]

    @property
    def ok(self) -> bool:
        """True when nothing is fatal (dropped items are allowed)."""
        return not self.fatal

    def counts(self) -> Counter:
        """Number of problems per ``(severity, code)``."""
        return Counter((p.severity, p.code) for p in self.problems)

    def format_summary(self, max_lines: int = 20) -> str:
        """A short, readable summary: counts per problem, then the first problems.

        Args:
            max_lines: at most this many individual problems are listed (fatal ones first).

        Returns:
            Several lines of text, without a trailing newline.
        """
        num_fatal, num_dropped = len(self.fatal), len(self.dropped)
        depths = self.format_bit_depths()
        if not self.problems:
            return (
                f"{self.json_file}: OK ({self.num_images} images, {self.num_annotations} "
                f"annotations, {len(self.categories)} categories; image root {self.image_root})"
                + (f"\n  {depths}" if depths else "")
            )
        scope = (f" in {self.num_images} images and {self.num_annotations} annotations"
                 if self.num_images or self.num_annotations else "")
        root = f" (image root {self.image_root})" if self.image_root else ""
        changed = f", {len(self.changed)} changed item(s)" if self.changed else ""
        lines = [
            f"{self.json_file}: {num_fatal} fatal problem(s), {num_dropped} dropped item(s)"
            f"{changed}{scope}{root}"
        ]
        if depths:
            lines.append(f"  {depths}")
        for (severity, code), count in sorted(self.counts().items()):
            lines.append(f"  {code} ({severity}): {count}")
        ordered = self.fatal + self.dropped + self.changed
        for problem in ordered[:max_lines]:
            lines.append("  " + problem.format())
        if len(ordered) > max_lines:
            lines.append(
                f"  ... and {len(ordered) - max_lines} more "
                "(tools/validate_dataset.py JSON IMAGE_ROOT --all lists every one)"
            )
        return "\n".join(lines)

    def format_bit_depths(self) -> str:
        """``"image files: 2 8-bit RGB, 1 16-bit grayscale (rescaled to 8 bits ...)"``."""
        if not self.bit_depths:
            return ""
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.bit_depths.items()))
        deep = any(not kind.startswith(("1-bit", "8-bit")) for kind in self.bit_depths)
        rule = (" (deeper than 8 bits: rescaled to 8 bits, each image from its own minimum to "
                "its maximum, see datasets/README.md)") if deep else ""
        return f"image files: {parts}{rule}"


class DatasetValidationError(InputError):
    """A dataset (or the way it was given) cannot be used; ``.report`` says why.

    ``str(err)`` is the report's short summary, ready to print without a traceback.
    """

    def __init__(self, report: ValidationReport, message: str | None = None) -> None:
        self.report = report
        super().__init__(message or report.format_summary())

    @classmethod
    def single(cls, code: str, message: str, file: str) -> DatasetValidationError:
        """An error about one thing that is not an item of a loaded file.

        Args:
            code: the problem code.
            message: the full message, naming what was expected and found.
            file: the file (or command-line argument) concerned.
        """
        report = ValidationReport(json_file=file, image_root="")
        report.add("fatal", code, message)
        return cls(report, message)


def log_corrections(report: ValidationReport, what: str, log: logging.Logger) -> None:
    """Log what validation dropped and changed, with counts, and deep images' rescaling.

    Args:
        report: a validation report without fatal problems.
        what: how the messages name the dataset (``"Dataset 'x'"``).
        log: where to log.
    """
    for kind, problems in (("dropped", report.dropped), ("changed", report.changed)):
        if not problems:
            continue
        per_code: dict[str, int] = {}
        for problem in problems:
            per_code[problem.code] = per_code.get(problem.code, 0) + 1
        counts = ", ".join(f"{code}: {n}" for code, n in sorted(per_code.items()))
        kept = (f"; {report.num_kept_annotations} of {report.num_annotations} annotations kept"
                if kind == "dropped" else "")
        log.warning(
            f"{what} ({report.json_file}): {len(problems)} item(s) {kind} ({counts})"
            f"{kept}. First: {problems[0].format()}"
        )
    deep = {k: n for k, n in report.bit_depths.items() if not k.startswith(("1-bit", "8-bit"))}
    if deep:
        log.info(f"{what}: {report.format_bit_depths()}")
