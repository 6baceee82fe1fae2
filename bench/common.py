"""What the benchmarks share: one trained zoo:fashion-mt checkpoint, cached between runs.

`MTEDGE_FASHION_CHECKPOINT` points at an existing checkpoint; otherwise the model is trained
once (the default 4 epochs of `mtedge train`, about 3.5 minutes on 2 cores) into
bench/.cache/fashion-mt.pt and reused by every later bench.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"


def trained_fashion(epochs: float = 4.0) -> Path:
    """Path of a trained zoo:fashion-mt checkpoint (trains one the first time)."""
    given = os.environ.get("MTEDGE_FASHION_CHECKPOINT")
    if given:
        if not Path(given).exists():
            raise SystemExit(f"MTEDGE_FASHION_CHECKPOINT={given} does not exist")
        return Path(given)
    path = CACHE / "fashion-mt.pt"
    if path.exists():
        _upgrade(path)
    if not path.exists():
        from toolchain.model import load, save_checkpoint
        from toolchain.train import TrainConfig, evaluate_on_test, train

        loaded = load("zoo:fashion-mt")
        train(loaded.module, loaded.recipe, TrainConfig(epochs=epochs), description="training fashion-mt for the benches")
        save_checkpoint(path, loaded.module, "zoo:fashion-mt", loaded.recipe, metrics=evaluate_on_test(loaded.module, loaded.recipe))
    return path


def _upgrade(path: Path) -> None:
    """A cache written before checkpoint format 2 pickled the module: this bench wrote it, so it is
    trusted once and re-saved as format 2 (loads without unpickling code from then on)."""
    from toolchain.errors import SpecError
    from toolchain.model import load, save_checkpoint

    try:
        load(str(path))
        return
    except SpecError as e:
        if "--trust-pickle" not in str(e):
            raise
    old = load(str(path), trust_pickle=True)
    save_checkpoint(path, old.module, old.origin, old.recipe,
                    **{k: v for k, v in old.meta.items() if k == "metrics"})
