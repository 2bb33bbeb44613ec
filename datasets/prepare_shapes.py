#!/usr/bin/env python
"""Generate the built-in synthetic `shapes` dataset (COCO format) into datasets/generated/shapes.

    python datasets/prepare_shapes.py                       # the default dataset (240 + 60 images)
    python datasets/prepare_shapes.py --output out/small --num-train 8 --num-val 4 --image-size 64

Deterministic for a given --seed; see segcontrast/data/shapes.py for what is drawn.
"""

import argparse
import sys
from dataclasses import fields

import segcontrast.engine  # noqa: F401  (makes detectron2 usable; registers the heads)
from segcontrast.data.shapes import ShapesConfig, generate_shapes
from segcontrast.datasets.builtin import builtin_root


def main() -> int:
    defaults = ShapesConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(builtin_root() / "shapes"), help="output folder")
    for field in fields(ShapesConfig):
        default = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(default),
                            default=default)
    args = parser.parse_args()
    cfg = ShapesConfig(**{f.name: getattr(args, f.name) for f in fields(ShapesConfig)})
    paths = generate_shapes(args.output, cfg)
    print(f"prepare_shapes: wrote {paths['train']} and {paths['val']} "
          f"(images under {paths['image_root']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
