"""How much change the EfficientNet bench's top-1 agreement tolerates (`make bench-sensitivity`).

The pruning acceptance asks for >= 90 % top-1 agreement with the unpruned network on held-out
photos after removing 40 % of the FLOPs. This bench measures what that target means on these
photos, with no pruning at all: Gaussian noise of a given fraction of each convolution's weight
standard deviation is added to every convolution of the encoder (fixed seed), and the agreement
of the perturbed network's top-1 with the original's is counted on the bench's test crops. It also
reports the original's own confidence there (top-1 probability, logit margin to the runner-up):
where the top two classes are nearly tied, any change of the function flips the answer.

Writes bench/results/effnet_sensitivity.json atomically. Torch threads: MTEDGE_BENCH_THREADS (1).
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from toolchain.bundle.files import write_json_atomic  # noqa: E402
from toolchain.data.loaders import batches  # noqa: E402
from toolchain.recipe import parse_recipe  # noqa: E402

OUT = ROOT / "bench" / "results" / "effnet_sensitivity.json"
NOISE = (0.003, 0.01, 0.03, 0.1)


@torch.no_grad()
def perturbed_agreement(model: torch.nn.Module, x: torch.Tensor, reference: torch.Tensor, rel: float,
                        seed: int = 0) -> float:
    """Top-1 agreement (%) with `reference` logits after noise of `rel` x each conv weight's std."""
    noisy = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for m in noisy.net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight += rel * m.weight.std() * torch.randn(m.weight.shape, generator=gen)
    return 100.0 * (noisy(x)[0].argmax(1) == reference.argmax(1)).float().mean().item()


def main() -> int:
    from common import CACHE
    from effnet_mt import build, recipe_doc, write_photo_folder

    torch.set_num_threads(int(os.environ.get("MTEDGE_BENCH_THREADS", "1")))
    folder = ROOT / "build" / "bench-photos"
    if not (folder / "test").is_dir():
        write_photo_folder(folder)
    recipe = parse_recipe(recipe_doc(folder))
    model = build(cache=CACHE / "effnet-heads.pt")
    x = torch.cat([b for b, _ in batches(recipe, "test", batch_size=33)])
    with torch.no_grad():
        logits = model(x)[0]
    top2 = logits.topk(2, 1).values
    p1 = logits.softmax(1).max(1).values
    rows = {f"{rel:g}": perturbed_agreement(model, x, logits, rel) for rel in NOISE}
    result = {"model": "EfficientNet-Lite0 (ImageNet-trained) as in bench/effnet_mt.py", "test_images": len(x),
              "torch_threads": torch.get_num_threads(),
              "top1_probability_median": p1.median().item(),
              "top1_probability_quartiles": p1.quantile(torch.tensor([0.25, 0.75])).tolist(),
              "logit_margin_median": (top2[:, 0] - top2[:, 1]).median().item(),
              "agreement_pct_by_relative_weight_noise": rows}
    write_json_atomic(OUT, result)
    table = Table(title=f"top-1 agreement with the original on {len(x)} held-out crops, conv weights + noise")
    table.add_column("noise (x weight std)")
    table.add_column("agreement %")
    for rel, agree in rows.items():
        table.add_row(rel, f"{agree:.1f}")
    console = Console(width=100)
    console.print(table)
    console.print(f"original top-1 probability: median {result['top1_probability_median']:.2f}; "
                  f"logit margin to the runner-up: median {result['logit_margin_median']:.2f}")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
