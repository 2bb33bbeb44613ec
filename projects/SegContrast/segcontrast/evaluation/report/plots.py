"""PNG plots of an evaluation (matplotlib's Agg backend, files written atomically).

Per-class semantic vs instance IoU, the normalised confusion matrix, and ground-truth vs
prediction overlays of the worst images.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ...data.image_io import read_rgb  # noqa: E402
from ...data.masks import MaskCrops  # noqa: E402
from ...utils import atomic_write  # noqa: E402
from ..metrics.boundary import mask_boundary  # noqa: E402

__all__ = ["draw_instances", "plot_accounting", "plot_class_iou", "plot_confusion", "plot_overlay"]


def _save(fig: plt.Figure, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_class_iou(
    path: str, class_names: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> None:
    """Grouped bars per class, one bar per series (percent; NaN drawn as absent).

    Args:
        path: PNG file.
        class_names: K names.
        series: ``(label, K IoUs)`` pairs, e.g. semantic IoU and instance IoU (missed = 0).
    """
    k = len(class_names)
    x = np.arange(k)
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * k * len(series) + 2), 4))
    for i, (label, values) in enumerate(series):
        shown = np.nan_to_num(np.asarray(values, float), nan=0.0)
        ax.bar(x - 0.4 + width * (i + 0.5), shown, width, label=label)
    for i in range(k):
        if all(math.isnan(values[i]) for _, values in series):
            ax.text(x[i], 1, "absent", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Per class: " + " vs ".join(label.split(" (")[0] for label, _ in series))
    _save(fig, path)


def plot_confusion(path: str, labels: Sequence[str], confusion: np.ndarray) -> None:
    """Confusion matrix normalised per ground-truth row (background included).

    Args:
        path: PNG file.
        labels: K + 1 names, background first.
        confusion: (K + 1, K + 1) counts, rows ground truth.
    """
    conf = confusion.astype(np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * n + 2), max(4.0, 0.5 * n + 1.5)))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title("Semantic confusion (rows sum to 1)")
    _save(fig, path)


def _palette(n: int) -> np.ndarray:
    cmap = plt.get_cmap("tab20")
    return (np.array([cmap(i % 20)[:3] for i in range(max(n, 1))]) * 255).astype(np.float32)


def draw_instances(
    background: np.ndarray,
    masks: MaskCrops,
    classes: np.ndarray,
    palette: np.ndarray,
    crowd: np.ndarray | None = None,
) -> np.ndarray:
    """Blend instance masks (coloured by class) over an image, outlines in white.

    Args:
        background: (H, W, 3) uint8 RGB.
        masks: the instances.
        classes: (N,) their classes.
        palette: (K, 3) colours.
        crowd: (N,) bool; crowd regions are drawn light grey without outline.

    Returns:
        (H, W, 3) uint8.
    """
    out = background.astype(np.float32)
    for i in range(len(masks)):
        if masks.areas[i] == 0:
            continue
        x0, y0, x1, y1 = masks.boxes[i]
        crop = masks.crops[i]
        region = out[y0:y1, x0:x1]
        is_crowd = crowd is not None and bool(crowd[i])
        color = np.float32(220) if is_crowd else palette[classes[i] % len(palette)]
        region[crop] = 0.45 * region[crop] + 0.55 * color
        if not is_crowd:
            region[mask_boundary(crop, 1)] = 255.0
    return out.clip(0, 255).astype(np.uint8)


def _load_rgb(file_name: str, height: int, width: int) -> np.ndarray:
    # The project's one reader: EXIF orientation and deep images as training saw them.
    try:
        rgb = read_rgb(file_name)
        if rgb.shape[:2] == (height, width):
            return rgb
    except (OSError, ValueError, SyntaxError):
        pass
    return np.full((height, width, 3), 96, np.uint8)


def plot_overlay(
    path: str,
    file_name: str,
    gt: MaskCrops,
    gt_classes: np.ndarray,
    gt_crowd: np.ndarray,
    pred: MaskCrops,
    pred_classes: np.ndarray,
    num_classes: int,
    title: str,
) -> None:
    """Ground truth (left) and prediction (right) drawn over the image.

    Args:
        path: PNG file.
        file_name: the image, read as training reads it (``data.image_io.read_rgb``); a
            grey canvas when it cannot be read at the right size.
        gt: ground-truth instances (crowd regions included).
        gt_classes: their classes.
        gt_crowd: their crowd flags (drawn grey).
        pred: predicted instances.
        pred_classes: their classes.
        num_classes: K (colours).
        title: the figure title.
    """
    background = _load_rgb(file_name, gt.height, gt.width)
    palette = _palette(num_classes)
    aspect = gt.width / max(gt.height, 1)
    fig, axes = plt.subplots(1, 2, figsize=(2 * 4.5 * min(aspect, 2.5) + 0.5, 4.8))
    panels = (
        (
            draw_instances(background, gt, gt_classes, palette, gt_crowd),
            f"ground truth ({int(np.count_nonzero(~gt_crowd))}, crowd regions grey)",
        ),
        (draw_instances(background, pred, pred_classes, palette), f"prediction ({len(pred)})"),
    )
    for ax, (image, label) in zip(axes, panels, strict=True):
        ax.imshow(image)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def overlay_name(rank: int, image_id: object) -> str:
    """File name of the rank-th worst image's overlay."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(image_id))[:60]
    return os.path.join("worst_images", f"{rank:02d}_{safe}.png")


def plot_accounting(path: str, rows: Sequence[dict]) -> None:
    """Horizontal bars: what fixing each error type gains in each headline metric.

    Args:
        path: PNG file.
        rows: the accounting's rows (``details["accounting"]["rows"]``): ``error``, ``count``
            and ``delta_<metric>`` per headline metric; the ``all`` row is left out.
    """
    metrics = [("delta_semantic_mIoU", "semantic mIoU"), ("delta_instance_mIoU", "instance mIoU"),
               ("delta_PQ", "PQ"), ("delta_AP", "mask AP")]
    metrics = [m for m in metrics if rows and m[0] in rows[0]]
    shown = [r for r in rows if r["error"] != "all"]
    y = np.arange(len(shown))
    height = 0.8 / max(len(metrics), 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(shown) + 1.5))
    for i, (key, label) in enumerate(metrics):
        values = np.nan_to_num(np.array([r[key] for r in shown], float), nan=0.0)
        ax.barh(y - 0.4 + height * (i + 0.5), values, height, label=label)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['error'].replace('_', ' ')} ({r['count']})" for r in shown])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("gain if only this error is fixed (percent points)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Gap accounting: each error type fixed alone")
    _save(fig, path)
