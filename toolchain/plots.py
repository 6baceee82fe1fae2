"""Report figures (pruning path, slimmable widths, sweep Pareto fronts): matplotlib on its Agg
backend, so no display is needed, and every PNG written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from toolchain.bundle.files import write_bytes_atomic


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` as PNG (temp + rename) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)
