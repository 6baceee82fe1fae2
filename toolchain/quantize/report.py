"""The quantization report: `quant.json` (everything) and `quant.md` (for people), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.bundle.files import write_bytes_atomic, write_json_atomic


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(report: dict[str, Any]) -> str:
    """A readable summary of `report` (see quantize_bundle)."""
    variants = [v for v in ("fp32", "int8", "fp16") if v in report["variants"]]
    lines = [f"# Quantization report: {report['name']}", "",
             f"Recipe `{report['recipe']}`, evaluation with {report['mode']}; accuracy control on `val` "
             f"keeps each task within {100 * (1 - report['margin']):.0f} % of its allowed drop "
             f"(safety margin {report['margin']:.2f}); `test` is the held-out check against the full allowed drop.", ""]
    for split in ("val", "test"):
        if not any(split in report["variants"][v].get("scores", {}) for v in variants):
            continue
        lines += [f"## Per-task metrics ({split})", "",
                  "| task | metric | allowed drop | " + " | ".join(variants) + " |",
                  "|---|---|---|" + "---|" * len(variants)]
        for t, info in report["tasks"].items():
            cells = []
            for v in variants:
                s = report["variants"][v].get("scores", {}).get(split, {}).get(t)
                if s is None:
                    cells.append("–")
                else:
                    mark = "" if s["within_bound"] else " **over**"
                    cells.append(f"{s['value']:.2f}" + (f" ({-s['drop']:+.2f})" if v != "fp32" else "") + mark)
            lines.append(f"| {t} | {info['metric']} | {info['allowed_drop']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Size and OpenVINO CPU latency", "", "| variant | written | bytes on disk | latency ms (median) | speedup vs fp32 |",
              "|---|---|---|---|---|"]
    for v in variants:
        r = report["variants"][v]
        lat = r.get("latency", {})
        lines.append(f"| {v} | {'yes' if r.get('written') else 'no'} | {r.get('bytes', '–')} | "
                     f"{_fmt(lat.get('latency_ms'), 3)} ({lat.get('hint', '–')}) | {_fmt(r.get('speedup_vs_fp32'))} |")
    lines.append("")
    int8 = report["variants"].get("int8")
    if int8 is not None:
        lines += ["## Layers kept in float (int8)", ""]
        if not int8["decisions"]:
            lines.append("None: every task was within its bound with all layers quantized.")
        for d in int8["decisions"]:
            lines.append(f"- `{d['segment']}` / `{d['layer']}` ({'shared' if d['shared'] else 'head'}): {d['reason']}")
        if int8.get("unresolved"):
            lines.append(f"- unresolved: {', '.join(int8['unresolved'])}")
        cal = int8.get("calibration") or {}
        lines += ["", f"Calibration: {cal.get('samples')} `{cal.get('split')}` samples of {cal.get('source')}, "
                      f"NNCF {cal.get('nncf')} preset `{cal.get('preset')}`, fast bias correction "
                      f"{cal.get('fast_bias_correction')}.", ""]
    fp16 = report["variants"].get("fp16")
    if fp16 is not None:
        lines += ["## fp16", "", f"Ops computing in float16: {', '.join(fp16.get('float16_ops', []))}. "
                  f"Boundaries: {fp16.get('boundaries')}.", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write quant.json and quant.md under `out_dir` (each atomically); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    j, md = out_dir / "quant.json", out_dir / "quant.md"
    write_json_atomic(j, report)
    write_bytes_atomic(md, markdown(report).encode())
    return j, md
