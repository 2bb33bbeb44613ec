"""Seconds per training iteration of a tiny Mask R-CNN with the stock and SegContrast mask heads.

The model is ``configs/Base-Tiny-R18-GN.yaml`` (3 classes); the batch is 4 synthetic 128x128 images
with 6 instances each (ellipses and rings), the same for every head. All heads start from the same
weights and each iteration reseeds torch, so that every head sees the same proposals and ROIs: the
only difference is the mask loss. An iteration is forward + backward (no optimizer step, which
would let the weights, and with them the proposals, drift apart). Heads are timed round-robin,
in a new random order each repeat, and each figure is the median. Peak memory is measured per head
in a separate process.

    python bench/bench_train_step.py                  # print the table
    python bench/bench_train_step.py --write-docs     # also write it into docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import segcontrast
import torch
from bench_losses import run_header, time_interleaved, write_docs
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

REPO = Path(__file__).resolve().parents[1]
STOCK = "MaskRCNNConvUpsampleHead (stock BCE)"
HEADS = {
    STOCK: {"NAME": "MaskRCNNConvUpsampleHead"},
    "FocalLossMaskHead": {"NAME": "FocalLossMaskHead"},
    "PosWeightedBCEMaskHead, batch scope": {"NAME": "PosWeightedBCEMaskHead"},
    "PosWeightedBCEMaskHead, instance scope": {
        "NAME": "PosWeightedBCEMaskHead",
        "POS_WEIGHT_SCOPE": "instance",
    },
}


def build_cfg(head_keys: dict, device: str):
    cfg = get_cfg()
    segcontrast.add_segcontrast_config(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "Base-Tiny-R18-GN.yaml"))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    for key, value in head_keys.items():
        cfg.MODEL.ROI_MASK_HEAD[key] = value
    return cfg


def synthetic_batch(device: str, num_images=4, size=128, per_image=6, seed=0) -> list[dict]:
    """Images of random ellipses and rings (instances may overlap), as a mapper would give."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    batch = []
    for _ in range(num_images):
        wh = torch.randint(16, 56, (per_image, 2), generator=gen)
        xy0 = (torch.rand(per_image, 2, generator=gen) * (size - wh)).floor()
        boxes = torch.cat([xy0, xy0 + wh], dim=1).float()
        classes = torch.randint(0, 3, (per_image,), generator=gen)
        masks = torch.zeros(per_image, size, size, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            r = ((ys + 0.5 - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2
            r = r + ((xs + 0.5 - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2
            masks[i] = (r <= 1) & (r > (0.4 if classes[i] == 2 else -1))
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = classes
        instances.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
        batch.append(
            {
                "image": image.to(device),
                "instances": instances.to(device),
                "height": size,
                "width": size,
            }
        )
    return batch


def build_models(device: str) -> dict[str, torch.nn.Module]:
    """One model per head, all with the stock model's initial weights."""
    torch.manual_seed(0)
    models = {}
    for name, keys in HEADS.items():
        models[name] = build_model(build_cfg(keys, device)).train()
        if name != STOCK:
            models[name].load_state_dict(models[STOCK].state_dict())
    return models


def iteration(model: torch.nn.Module, batch: list[dict], seed: int = 1) -> dict[str, float]:
    """Forward + backward; returns the losses."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # proposal sampling draws random numbers
    with EventStorage():
        losses = model(batch)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}


def peak_memory_child(name: str, device: str, iters: int) -> dict:
    """Peak RSS (and CUDA memory) of one head's model: built, then trained ``iters`` iterations.

    Runs in a fresh process. Every head's run builds the stock model first (for the weights) and
    then its own, so that all have the same allocation history.
    """
    batch = synthetic_batch(device)
    torch.manual_seed(0)
    stock = build_model(build_cfg(HEADS[STOCK], device))
    model = build_model(build_cfg(HEADS[name], device)).train()
    model.load_state_dict(stock.state_dict())
    del stock
    built_mib = _rss_mib("VmRSS")
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS, so that the
    # peak below is that of training, not of importing torch's libraries.
    Path("/proc/self/clear_refs").write_text("5")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(iters):
        iteration(model, batch)
    out = {"rss_mib": _rss_mib("VmHWM"), "growth_mib": _rss_mib("VmHWM") - built_mib}
    if device == "cuda":
        out["cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--device", args.device]
    cmd += ["--threads", str(args.threads), "--memory-iters", str(args.memory_iters)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--memory-iters", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(peak_memory_child(args.child, args.device, args.memory_iters)))
        return 0

    batch = synthetic_batch(args.device)
    models = build_models(args.device)
    losses = {name: iteration(model, batch) for name, model in models.items()}
    for name in HEADS:  # only the mask loss may differ
        assert {k: v for k, v in losses[name].items() if k != "loss_mask"} == {
            k: v for k, v in losses[STOCK].items() if k != "loss_mask"
        }, name
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    variants = {name: (lambda m=model: iteration(m, batch)) for name, model in models.items()}
    seconds = time_interleaved(variants, args.repeats, args.warmup, sync)
    memory = {name: peak_memory(name, args) for name in HEADS}

    num_rois = _mask_rois(models[STOCK], batch)
    lines = [
        f"Forward + backward of one iteration, 4 images 128x128, ~{num_rois} mask ROIs; median of "
        f"{args.repeats} interleaved repeats; {args.threads if args.device == 'cpu' else 'GPU'} "
        "torch thread(s). Peak memory: each head in its own process, peak RSS over "
        f"{args.memory_iters} iterations after building the model (Linux VmHWM, reset after the "
        "build); growth = that peak minus the RSS of the built model.",
        "",
        *run_header(args.device),
        "",
        "| mask head | s / iteration | vs stock | loss_mask | peak RSS (MiB) | growth (MiB) |"
        + (" peak CUDA (MiB) |" if args.device == "cuda" else ""),
        "|---|---|---|---|---|---|" + ("---|" if args.device == "cuda" else ""),
    ]
    for name in HEADS:
        row = (
            f"| {name} | {seconds[name]:.3f} | {seconds[name] / seconds[STOCK]:.3f}x "
            f"| {losses[name]['loss_mask']:.4f} | {memory[name]['rss_mib']:.0f} "
            f"| {memory[name]['growth_mib']:.0f} |"
        )
        if args.device == "cuda":
            row += f" {memory[name]['cuda_mib']:.0f} |"
        lines.append(row)
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        write_docs("train_step", text)
    return 0


def _mask_rois(model: torch.nn.Module, batch: list[dict]) -> int:
    """How many ROIs the mask head trains on in an iteration."""
    seen = []
    hook = model.roi_heads.mask_head.predictor.register_forward_hook(
        lambda _m, _i, out: seen.append(len(out))
    )
    iteration(model, batch)
    hook.remove()
    return seen[0]


if __name__ == "__main__":
    raise SystemExit(main())
