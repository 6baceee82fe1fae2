"""Fashion-MNIST, read offline from Debian's `dataset-fashion-mnist` IDX files.

Every sample yields the targets of the four fashion-mt tasks:

- ``garment``    the 10-class label,
- ``group``      a coarser 4-class label (tops, full-length, footwear, bags),
- ``silhouette`` a per-pixel foreground mask of the clean image (2 classes),
- ``denoise``    the clean image in [0, 1]; the model sees it with Gaussian noise added.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolchain.errors import SpecError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
GARMENTS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
GROUPS = ("top", "full-length", "footwear", "bag")
GROUP_OF = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int64)  # garment label -> group label
SILHOUETTE_THRESHOLD = 0.1  # pixel intensity in [0, 1] above which a pixel belongs to the garment
NOISE_SIGMA = 0.1  # std of the Gaussian noise added to the model input, in [0, 1] pixel units
MEAN, STD = 0.2860, 0.3530  # training-split statistics of clean pixels


def data_dir() -> Path:
    return Path(os.environ.get("MTEDGE_FASHION_DIR", DEFAULT_DIR))


def _read_idx(path: Path) -> np.ndarray:
    if not path.exists():
        raise SpecError(f"Fashion-MNIST file {path} not found; install Debian's dataset-fashion-mnist "
                        f"(`make system` or `apt-get install dataset-fashion-mnist`) or set MTEDGE_FASHION_DIR")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise SpecError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SpecError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


@dataclass(frozen=True)
class FashionSplit:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, offset: int = 0) -> "FashionSplit":
        end = len(self) if n is None else min(len(self), offset + n)
        return FashionSplit(self.images[offset:end], self.labels[offset:end])


def load_split(split: str) -> FashionSplit:
    """`split` is "train" (60,000 images) or "test" (10,000)."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise SpecError(f"unknown Fashion-MNIST split {split!r}; expected 'train' or 'test'")
    d = data_dir()
    return FashionSplit(_read_idx(d / f"{prefix}-images-idx3-ubyte.gz"),
                        _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64))


def normalize(clean: torch.Tensor) -> torch.Tensor:
    return (clean - MEAN) / STD


def make_batch(images: np.ndarray, labels: np.ndarray, generator: torch.Generator | None = None,
               seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Model input (noisy, normalized, [B,1,28,28]) and the targets of every task.

    Noise comes from `generator` (training) or from `seed` (evaluation: the same noise every run).
    """
    clean = torch.tensor(images, dtype=torch.float32).div_(255.0).unsqueeze(1)
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    noisy = (clean + NOISE_SIGMA * torch.randn(clean.shape, generator=generator)).clamp_(0.0, 1.0)
    return normalize(noisy), {"garment": torch.from_numpy(labels), "group": torch.from_numpy(GROUP_OF[labels]),
                              "silhouette": (clean[:, 0] > SILHOUETTE_THRESHOLD).long(), "denoise": clean}


def iterate(split: FashionSplit, batch_size: int, shuffle: bool, seed: int = 0):
    """Yield (input, targets) batches; evaluation batches get deterministic noise per batch index."""
    order = np.random.default_rng(seed).permutation(len(split)) if shuffle else np.arange(len(split))
    gen = torch.Generator().manual_seed(seed)
    for b, start in enumerate(range(0, len(split), batch_size)):
        idx = order[start : start + batch_size]
        noise = {"generator": gen} if shuffle else {"seed": seed * 100003 + b}
        yield make_batch(split.images[idx], split.labels[idx], **noise)
