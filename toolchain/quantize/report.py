"""The quantization report, typed (:class:`QuantizeReport`): `quant.json` (everything) and
`quant.md` (for people), written atomically; and the default-variant recommendation a caller applies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bundle.files import write_bytes_atomic, write_json_atomic
from toolchain.bundle.manifest import Bundle


@dataclass
class TaskBound:
    """A task's metric, its allowed drop, the bound accuracy control holds on val, and fp32 per split."""

    metric: str
    allowed_drop: float
    val_bound: float
    fp32: dict[str, float]


@dataclass
class VariantResult:
    """One precision's outcome. ``scores[split][task]`` = {value, drop, within_bound};
    ``scores["<split>_max_abs_error"][task]`` = max abs error against the fp32 chain."""

    written: bool
    segments: dict[str, str]  # segment -> what its file computes in (int8, mixed, fp16, fp32)
    scores: dict[str, dict[str, Any]]
    seconds: float = 0.0
    golden_max_abs_error: dict[str, float] | None = None
    tolerance: dict[str, float] | None = None
    calibration: dict[str, Any] | None = None
    # int8: accuracy control
    float_layers: dict[str, list[str]] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    quantized_layers: dict[str, int] = field(default_factory=dict)
    # fp16
    float16_ops: list[str] = field(default_factory=list)
    boundaries: str | None = None
    # measured after writing (written variants only)
    bytes: int | None = None
    latency: dict[str, Any] | None = None
    speedup_vs_fp32: float | None = None
    slower_than_fp32: bool | None = None
    # per task: does this host's OpenVINO compute the written variant within its tolerance?
    openvino_agreement: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class DefaultRecommendation:
    """Which variant to make the bundle's ``default_variant``, and on what evidence. Never applied by
    :func:`quantize_bundle`: the latency was measured on *this host* (OpenVINO CPU), which says
    nothing about a Jetson; the caller applies it (``mtedge quantize --set-default``) for a bundle
    that will run on a machine like this one."""

    variant: str  # fastest written variant within every bound on this host (fp32 when none pays its way)
    current: str  # the manifest's default_variant when the report was made
    measured_on: str  # what the latency figures describe
    blocked_by_engines: tuple[str, ...] = ()  # engine entries keyed by the current default
    passed_over: dict[str, str] = field(default_factory=dict)  # variant -> why it is not the recommendation

    @property
    def changes(self) -> bool:
        return self.variant != self.current

    def explain(self) -> str:
        others = "".join(f"; not {v}: {why}" for v, why in self.passed_over.items())
        if not self.changes:
            return f"default_variant stays {self.current} (fastest within every bound on {self.measured_on}{others})"
        why = f"{self.variant} is the fastest variant within every task's bound on {self.measured_on}{others}"
        if self.blocked_by_engines:
            return (f"{why}, but engines {', '.join(self.blocked_by_engines)} are built for {self.current!r}: "
                    f"pass --variant {self.variant} to run it")
        return f"{why}; `mtedge quantize --set-default` (or apply_default) makes it the default for such machines"


def apply_default(bundle_path: str | Path, rec: DefaultRecommendation) -> bool:
    """Make ``rec.variant`` the bundle's default_variant; False (nothing changed) when it already is
    or when engines are keyed by the current default (their keys name it: rebuild them first)."""
    if not rec.changes or rec.blocked_by_engines:
        return False
    bundle = Bundle.open(bundle_path)
    bundle.manifest.default_variant = rec.variant
    bundle.save_manifest()
    return True


@dataclass
class QuantizeReport:
    """What :func:`toolchain.quantize_bundle` did; ``ok`` when every requested variant was written."""

    bundle: str
    name: str
    recipe: str
    mode: str  # "labels" or "label-free"
    margin: float
    tasks: dict[str, TaskBound] = field(default_factory=dict)
    variants: dict[str, VariantResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ok: bool = False
    seconds: float = 0.0
    bf16: dict[str, Any] | None = None
    recommendation: DefaultRecommendation | None = None  # None when latency was not measured

    def written(self, precision: str) -> bool:
        v = self.variants.get(precision)
        return bool(v and v.written)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (quant.json)."""
        return dataclasses.asdict(self)


def _fmt(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _score_cell(s: dict[str, Any] | None, with_drop: bool) -> str:
    if s is None:
        return "–"
    drop = f" ({-s['drop']:+.2f})" if with_drop else ""
    return f"{s['value']:.2f}{drop}" + ("" if s["within_bound"] else " **over**")


def executes(latency: dict[str, Any]) -> str:
    """What the host ran for a latency row: "f32; compute layers u8 x7, f32 x2" ('–' when unknown)."""
    if not (ex := latency.get("executes")):
        return "–"
    layers = ", ".join(f"{p} x{n}" for p, n in ex["compute_layers"].items())
    return f"{ex['inference_precision']}; compute layers {layers or 'none'}"


def markdown(report: QuantizeReport) -> str:
    """A readable summary of `report` (see quantize_bundle)."""
    results = report.variants
    variants = [v for v in ("fp32", "int8", "fp16") if v in results]
    lines = [f"# Quantization report: {report.name}", "",
             f"Recipe `{report.recipe}`, evaluation with {report.mode}; accuracy control on `val` "
             f"keeps each task within {100 * (1 - report.margin):.0f} % of its allowed drop "
             f"(safety margin {report.margin:.2f}); `test` is the held-out check against the full allowed drop.", ""]
    for split in ("val", "test"):
        if not any(split in results[v].scores for v in variants):
            continue
        lines += [f"## Per-task metrics ({split})", "",
                  "| task | metric | allowed drop | " + " | ".join(variants) + " |",
                  "|---|---|---|" + "---|" * len(variants)]
        for t, info in report.tasks.items():
            cells = [_score_cell(results[v].scores.get(split, {}).get(t), v != "fp32") for v in variants]
            lines.append(f"| {t} | {info.metric} | {info.allowed_drop:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Size and OpenVINO CPU latency", "",
              "| variant | written | stored as | bytes on disk | latency ms (median) | hint: executes | speedup vs fp32 |",
              "|---|---|---|---|---|---|---|"]
    rows = [(v, results[v].written, results[v].bytes, results[v].latency or {}, results[v].speedup_vs_fp32) for v in variants]
    if report.bf16:  # the fp32 files at the bf16 hint, measured in the same loop
        rows.append(("fp32 @ bf16 hint", True, None, report.bf16["latency"], report.bf16["speedup_vs_fp32"]))
    for v, written, size, lat, speedup in rows:
        lines.append(f"| {v} | {'yes' if written else 'no'} | {lat.get('stores', '–')} | {_fmt(size)} | "
                     f"{_fmt(lat.get('latency_ms'), 3)} | {lat.get('hint', '–')}: {executes(lat)} | {_fmt(speedup)} |")
    lines.append("")
    if report.recommendation is not None:
        lines += ["## Default variant", "", report.recommendation.explain() + ".", ""]
    if (int8 := results.get("int8")) is not None:
        lines += ["## Layers kept in float (int8)", ""]
        if not int8.decisions:
            lines.append("None: every task was within its bound with all layers quantized.")
        for d in int8.decisions:
            lines.append(f"- `{d['segment']}` / `{d['layer']}` ({'shared' if d['shared'] else 'head'}): {d['reason']}")
        if int8.unresolved:
            lines.append(f"- unresolved: {', '.join(int8.unresolved)}")
        cal = int8.calibration or {}
        lines += ["", f"Calibration: {cal.get('samples')} `{cal.get('split')}` samples of {cal.get('source')}, "
                      f"NNCF {cal.get('nncf')} preset `{cal.get('preset')}`, fast bias correction "
                      f"{cal.get('fast_bias_correction')}.", ""]
    if (fp16 := results.get("fp16")) is not None:
        lines += ["## fp16", "", f"Ops computing in float16: {', '.join(fp16.float16_ops)}. "
                  f"Boundaries: {fp16.boundaries}.", ""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def write_report(report: QuantizeReport, out_dir: Path) -> tuple[Path, Path]:
    """Write quant.json and quant.md under `out_dir` (each atomically); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    j, md = out_dir / "quant.json", out_dir / "quant.md"
    write_json_atomic(j, report.to_dict())
    write_bytes_atomic(md, markdown(report).encode())
    return j, md
