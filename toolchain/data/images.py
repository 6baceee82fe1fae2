"""Images in, model inputs out: the one place where pixels are decoded and normalized.

Every path that turns an image into a model input -- a recipe's data (``images``, ``arrays``,
``photos``), calibration, the pruning oracle, golden I/O, ``mtedge run --input`` and the benches --
goes through :func:`normalize`, so a bundle sees exactly the numbers its recipe describes:
``x = (pixel * scale - mean) / std`` per channel, NCHW float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from toolchain.errors import SpecError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def normalize(pixels: np.ndarray, scale: float, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Raw pixels [N, H, W, C] (uint8, uint16 or float) -> normalized float32 [N, C, H, W]."""
    if pixels.ndim != 4:
        raise SpecError(f"expected images as [N, H, W, C], got shape {list(pixels.shape)}")
    c = pixels.shape[-1]
    m = np.resize(np.asarray(mean, np.float32), c)
    s = np.resize(np.asarray(std, np.float32), c)
    x = (pixels.astype(np.float32) * np.float32(scale) - m) / s
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def read_input(path: str | Path, input_spec: Any) -> np.ndarray:
    """An image (.png/.jpg) or array (.npy) as a bundle's normalized float32 input (`mtedge run --input`);
    ``input_spec`` is the typed manifest's ``input`` (:class:`mtedge_runtime.manifest.InputSpec`).

    Images are resized to the input's HxW, converted to its channel count and normalized with the
    manifest's ``input.normalization``; arrays are taken as already normalized ([C,H,W], [1,C,H,W],
    or [N,C,H,W] of which the first sample is used)."""
    shape = tuple(input_spec.shape)
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = np.load(path).astype(np.float32)
        if a.shape == shape[1:]:
            a = a[None]
        elif a.ndim == len(shape) and a.shape[1:] == shape[1:]:
            a = a[: shape[0]]
        if a.shape != shape:
            raise SpecError(f"{path}: array of shape {list(a.shape)} does not fit input {input_spec.name!r} "
                            f"of shape {list(shape)}; save it as [C,H,W] or [N,C,H,W]")
        return np.ascontiguousarray(a)
    _, c, h, w = shape
    if c not in (1, 3):
        raise SpecError(f"input {input_spec.name!r} has {c} channels; pass a .npy array instead of an image")
    color = input_spec.color or ("gray" if c == 1 else "rgb")
    return normalize_for(read_image(path, color, (h, w))[None], input_spec.normalization)


def normalize_for(pixels: np.ndarray, input_spec) -> np.ndarray:
    """:func:`normalize` with anything carrying ``scale``, ``mean`` and ``std``: a recipe's ``input``
    (an InputSpec), a typed manifest's ``input.normalization``, or that normalization as a JSON dict."""
    if isinstance(input_spec, dict):
        n = input_spec.get("normalization", input_spec)
        return normalize(pixels, n["scale"], n["mean"], n["std"])
    return normalize(pixels, input_spec.scale, input_spec.mean, input_spec.std)


@dataclass(frozen=True)
class View:
    """Part of an image: a box (left, top, right, bottom as fractions of the width and height), then
    an optional left-right flip. Taken before the resize, so a crop keeps the file's resolution."""

    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    flip: bool = False


def random_view(rng: np.random.Generator, crop: tuple[float, float] = (1.0, 1.0), flip: bool = False) -> View:
    """A random view covering a share of the image area drawn from `crop`, aspect ratio within
    3:4..4:3 of the image's own, at a random place; flipped half the time when `flip`."""
    area = rng.uniform(*crop)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w, h = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
    left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    return View((left, top, left + w, top + h), bool(flip and rng.random() < 0.5))


def read_image(path: str | Path, color: str = "rgb", size: tuple[int, int] | None = None,
               view: View | None = None) -> np.ndarray:
    """Decode one image as raw pixel values [H, W, C] (C = 1 for gray, 3 otherwise).

    8-bit images give uint8 values, 16-bit grayscale PNGs their uint16 values (so a recipe's
    ``scale`` of 1/65535 reads them exactly). `size` = (H, W) resizes bilinearly when it differs.
    `color` is ``rgb``, ``bgr`` (channels reversed, for models trained on OpenCV images) or ``gray``.
    `view` crops (and flips) the decoded image before the resize (training augmentation).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                if color != "gray":
                    raise SpecError(f"{path} is a 16-bit grayscale image but the recipe reads color={color!r}; "
                                    "set data.color: gray")
                img = img.convert("I")
                dtype = np.uint16
            else:
                img = img.convert("L" if color == "gray" else "RGB")
                dtype = np.uint8
            if view is not None:
                l, t, r, b = view.box
                img = img.crop((round(l * img.width), round(t * img.height),
                                max(round(r * img.width), round(l * img.width) + 1),
                                max(round(b * img.height), round(t * img.height) + 1)))
                if view.flip:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            pix = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SpecError(f"cannot decode image {path} ({type(e).__name__}: {e}); expected a PNG/JPEG file") from None
    pix = pix.astype(dtype, copy=False)
    if pix.ndim == 2:
        pix = pix[:, :, None]
    if color == "bgr":
        pix = pix[:, :, ::-1]
    return np.ascontiguousarray(pix)


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A segmentation mask image as class indices [H, W] int64 (palette or gray values are the classes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("P", "L", "I", "I;16"):
                img = img.convert("L")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.NEAREST)
            return np.asarray(img).astype(np.int64)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SpecError(f"cannot decode mask {path} ({type(e).__name__}: {e}); expected a PNG of class indices") from None


def image_as_target(path: str | Path, size: tuple[int, int] | None, color: str) -> np.ndarray:
    """An image target (reconstruction, depth stored as an image) as float32 [C, H, W] in [0, 1]."""
    pix = read_image(path, color, size)
    top = 65535.0 if pix.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(pix.transpose(2, 0, 1), dtype=np.float32) / np.float32(top)
