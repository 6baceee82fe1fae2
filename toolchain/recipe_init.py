"""`mtedge recipe init`: a commented first recipe for a user's model.

Tasks come from the model's outputs (captured by toolchain.graph.capture), each kind guessed from
its output's shape and name; the user checks the guesses, fills in the normalization the model
was trained with, and points the data section at their images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from toolchain.data.images import IMAGE_SUFFIXES, read_image
from toolchain.errors import SpecError
from toolchain.graph.capture import capture, task_outputs

DEFAULT_DROPS = {"classification": 1.0, "segmentation": 1.0, "depth": 5.0, "regression": 5.0,
                 "keypoints": 5.0, "reconstruction": 0.3}
DROP_UNITS = {"classification": "top-1 points", "segmentation": "mIoU points", "depth": "% relative error",
              "regression": "% of the output's spread (nrmse)", "keypoints": "% of the output's spread (nrmse)",
              "reconstruction": "dB PSNR"}
_NAME_HINTS = (("keypoints", ("landmark", "keypoint", "kpt", "pose", "joint")),
               ("regression", ("box", "bbox", "reg", "offset", "coord", "size")),
               ("depth", ("depth", "disp")),
               ("reconstruction", ("recon", "denois", "restor", "rgb", "image")))
_LABELS_HINT = "  # labels: labels.csv  # a `file` column + one column per task; none = label-free"


def guess_kind(name: str, shape: Sequence[int], input_shape: Sequence[int]) -> str:
    """A task kind from an output's name and shape (batch first); a guess the user confirms."""
    low = name.lower()
    for kind, words in _NAME_HINTS:
        if any(w in low for w in words):
            return kind
    if len(shape) == 2:
        return "classification" if shape[1] > 1 else "regression"
    if len(shape) == 3 and shape[-1] in (2, 3):
        return "keypoints"
    if len(shape) == 4:
        return "depth" if shape[1] == 1 else "segmentation"
    return "regression"


def infer_input_shape(data_dir: str | Path) -> tuple[list[int], str]:
    """[1, C, H, W] and the color mode of the first image under `data_dir`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise SpecError(f"--data {root} is not a folder of images")
    first = next((p for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES), None)
    if first is None:
        raise SpecError(f"--data {root} holds no image ({', '.join(IMAGE_SUFFIXES)}); pass --input-shape 1,C,H,W")
    from PIL import Image

    with Image.open(first) as img:
        gray = img.mode in ("L", "I", "I;16", "I;16B", "1")
    pix = read_image(first, "gray" if gray else "rgb")
    return [1, pix.shape[2], pix.shape[0], pix.shape[1]], "gray" if gray else "rgb"


def draft_recipe(model: nn.Module, name: str, input_shape: Sequence[int] | None = None,
                 data_dir: str | Path | None = None, model_spec: str | None = None) -> str:
    """The recipe YAML text, with a comment on every line the user should check."""
    color = None
    if input_shape is None:
        if data_dir is None:
            raise SpecError("recipe init needs the input shape: pass --input-shape 1,C,H,W or --data DIR of images")
        input_shape, color = infer_input_shape(data_dir)
    input_shape = [int(v) for v in input_shape]
    if len(input_shape) != 4 or min(input_shape) <= 0:
        raise SpecError(f"input shape {input_shape} must be 4 positive ints: 1,C,H,W")
    gm = capture(model, allow_default_names=True)
    names = list(task_outputs(gm))  # in capture order, named by dict keys / namedtuple fields or out0...
    with torch.no_grad():
        out = gm(torch.zeros(input_shape))
    c = input_shape[1]
    color = color or ("gray" if c == 1 else "rgb")
    mean, std = ("[0.485, 0.456, 0.406]", "[0.229, 0.224, 0.225]") if c == 3 else ("[0.5]", "[0.25]")
    lines = [
        f"# Recipe drafted by `mtedge recipe init` for {model_spec or type(model).__name__}.",
        "# Check every line marked CHECK; allowed drops are against the uncompressed model.",
        f"name: {name}",
        *( [f"model: {model_spec}"] if model_spec else []),
        "input:",
        f"  shape: {input_shape}",
        "  layout: NCHW",
        "  # CHECK: the normalization the model was trained with, x = (pixel * scale - mean) / std",
        f"  normalization: {{scale: {1 / 255!r}, mean: {mean}, std: {std}}}",
        "data:",
        "  kind: images",
    ]
    if data_dir is not None:
        root = Path(data_dir)
        labels = next((p for d in (root, root.parent) for p in (d / "labels.csv", d / "labels.json") if p.exists()), None)
        lines += [f"  path: {root}", f"  labels: {labels}" if labels else _LABELS_HINT]
    else:
        lines += ["  path: images/      # CHECK: a folder of your images (png/jpg, searched recursively)", _LABELS_HINT]
    lines += [f"  color: {color}",
              f"  resize: [{input_shape[2]}, {input_shape[3]}]",
              "  splits: {val: 0.2, test: 0.2, calib: 0.1}   # by file name; the rest is train",
              "  val_count: 256",
              "  calibration_count: 128"]
    if any(n.startswith("out") and n[3:].isdigit() for n in names):  # positional outputs
        lines += ["# the model returns positional outputs: CHECK their names (rename here and under tasks)",
                  f"outputs: [{', '.join(names)}]"]
    lines.append("tasks:")
    for n in names:
        shape = list(out[n].shape)
        kind = guess_kind(n, shape, input_shape)
        lines.append(f"  {n}: {{kind: {kind}, allowed_drop: {DEFAULT_DROPS[kind]}}}"
                     f"   # CHECK: output {shape}; drop in {DROP_UNITS[kind]}")
    return "\n".join(lines) + "\n"
