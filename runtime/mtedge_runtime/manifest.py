"""The bundle manifest (docs/bundle-format.md, format_version 1) as typed objects: parse, validate, write.

This is the one definition of the contract on the Python side. The JSON key names are the
dataclass field names (defined once, here); :func:`parse` checks every structural rule that
matters and every cross rule the C++ parser (runtime/csrc/core/manifest.cpp) enforces, so a
manifest Python accepts is a manifest the runtime loads. Both are held to the same conformance
corpus (tests/data/manifests/), case by case, on accept/refuse and on the field they name.

Errors are :class:`ManifestError` (a ``BundleError``) whose message starts with the JSON path
of the bad field (``variants.fp32.segments.trunk.inputs: ...``), also kept in ``.field``.
:meth:`Manifest.to_dict` is the one writer: ``segments`` keeps its order (the execution order).

Only the standard library is used: this module runs on the device (Python >= 3.8).
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

from mtedge_runtime.errors import BundleError

FORMAT = "mtedge-bundle"
FORMAT_VERSION = 1
MAX_RANK = 8
MAX_ELEMENTS = 1 << 31  # as the C++ runtime (tensor.h kMaxElements): 8 GiB of float32
MAX_GOLDEN_SAMPLES = 1_000_000
PRECISIONS = ("fp32", "fp16", "int8", "mixed")
DTYPES = ("float32", "float16")
TASK_KINDS = ("classification", "segmentation", "depth", "regression", "keypoints", "reconstruction")
BACKENDS = ("openvino", "tensorrt")
FIX = "re-export the bundle or fix manifest.json (docs/bundle-format.md)"

# Names used as keys and in file paths (engines/<target>/<variant>/<segment>.blob): no '/'.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(BundleError):
    """A manifest rule is broken; ``field`` is the JSON path of the bad field (``top level`` for the document)."""

    def __init__(self, field_path: str, what: str, fix: str = FIX, where: str = "") -> None:
        super().__init__(f"{where + ': ' if where else ''}{field_path}: {what}; {fix}")
        self.field, self.what, self.fix = field_path, what, fix

    def located(self, where: str) -> "ManifestError":
        """The same error prefixed with the file it came from (``path/manifest.json: field: ...``)."""
        return ManifestError(self.field, self.what, self.fix, where)


def _fail(path: str, what: str, fix: str = FIX) -> None:
    raise ManifestError(path, what, fix)


def _join(path: str, key: str) -> str:
    return key if path == "top level" else f"{path}.{key}"


def _show(v: Any) -> str:
    import json
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


# --- value checkers: (value, path) -> value ------------------------------------------------------
# JSON booleans are Python ints: every numeric checker refuses bool explicitly.

def _str(v: Any, path: str) -> str:
    if not isinstance(v, str):
        _fail(path, f"expected a string, got {_show(v)}")
    return v


def _bool(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        _fail(path, f"expected true or false, got {_show(v)}")
    return v


def _any(v: Any, path: str) -> Any:
    return v


def _int(lo: int, hi: Optional[int] = None) -> Callable[[Any, str], int]:
    def check(v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            _fail(path, f"expected an integer from {lo}" + (f" to {hi}" if hi is not None else " up") + f", got {_show(v)}")
        return v
    return check


def _number(minimum: Optional[float] = None, exclusive: bool = False) -> Callable[[Any, str], float]:
    def check(v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            _fail(path, f"expected a number, got {_show(v)}")
        if minimum is not None and (v <= minimum if exclusive else v < minimum):
            _fail(path, f"expected a number {'>' if exclusive else '>='} {minimum}, got {_show(v)}")
        return v
    return check


def _enum(*allowed: Any) -> Callable[[Any, str], Any]:
    def check(v: Any, path: str) -> Any:
        if not isinstance(v, str) or v not in allowed:
            _fail(path, f"expected one of {', '.join(map(str, allowed))}, got {_show(v)}")
        return v
    return check


def _pattern(regex: "re.Pattern[str]", what: str) -> Callable[[Any, str], str]:
    def check(v: Any, path: str) -> str:
        if not regex.match(_str(v, path)):
            _fail(path, f"{_show(v)} is not {what}")
        return v
    return check


_ident = _pattern(_IDENT, "a name (a letter or '_', then letters, digits, '_', '.', '-')")


def _list(item: Callable[[Any, str], Any], min_items: int = 1) -> Callable[[Any, str], list]:
    def check(v: Any, path: str) -> list:
        if not isinstance(v, list) or len(v) < min_items:
            _fail(path, f"expected a list of at least {min_items} item(s), got {_show(v)}")
        return [item(x, f"{path}[{i}]") for i, x in enumerate(v)]
    return check


_names = _list(_str)


def _object(v: Any, path: str) -> Dict[str, Any]:
    if not isinstance(v, dict):
        _fail(path, f"expected an object, got {_show(v)}")
    return v


def _optional_object(v: Any, path: str) -> Optional[Dict[str, Any]]:
    return None if v is None else _object(v, path)


def _table(value: Callable[[Any, str], Any], min_items: int = 0, named: bool = False) -> Callable[[Any, str], dict]:
    """An object of named entries; keys are identifiers when ``named`` (they become file paths)."""
    def check(v: Any, path: str) -> dict:
        _object(v, path)
        if len(v) < min_items:
            _fail(path, "expected a non-empty object")
        out = {}
        for k, x in v.items():
            p = f"{path}.{k}"
            if named and not _IDENT.match(k):
                _fail(p, f"{_show(k)} is not a name (a letter or '_', then letters, digits, '_', '.', '-')")
            # an entry that records its own name gets the key itself (names may contain '.')
            out[k] = value(x, p, k) if getattr(value, "takes_key", False) else value(x, p)
        return out
    return check


def _shape(v: Any, path: str) -> List[int]:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_RANK:
        _fail(path, f"expected a list of 1 to {MAX_RANK} positive integers, got {_show(v)}")
    n = 1
    for d in v:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1 or d > MAX_ELEMENTS:
            _fail(path, f"expected positive integer dimensions, got {_show(v)}")
        n *= d
    if n > MAX_ELEMENTS:
        _fail(path, f"shape {v} is invalid (more than {MAX_ELEMENTS} elements)")
    return list(v)


def _relative_file(v: Any, path: str) -> str:
    _str(v, path)
    if not v or v.startswith("/") or "\\" in v:
        _fail(path, f"'{v}' must be a relative path with '/' separators")
    if any(part in ("", ".", "..") for part in v.split("/")):
        _fail(path, f"'{v}' must stay inside the bundle (no '..', '.', '//')")
    return v


def _sha256(v: Any, path: str) -> str:
    if not isinstance(v, str) or not _SHA256.match(v):
        _fail(path, f"expected 64 lowercase hex digits, got {_show(v)}")
    return v


# --- the model -------------------------------------------------------------------------------------

def _f(check: Callable[[Any, str], Any], default: Any = MISSING, *, factory: Any = MISSING,
       write_none: bool = False, key: bool = False, required: bool = False) -> Any:
    """A manifest field: its checker, and whether None is written (``config: null``) or omitted.
    ``required`` marks a field that has a Python default only because of dataclass field order."""
    meta = {"check": check, "write_none": write_none, "key": key, "required": required}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


class _Node:
    """Generic parse/write over the dataclass fields: the field names are the JSON keys."""

    STRICT = True  # unknown keys are refused (the schema's additionalProperties: false)

    @classmethod
    def parse(cls, v: Any, path: str, name: Optional[str] = None) -> Any:
        _object(v, path)
        own = [f for f in fields(cls) if not f.metadata.get("key") and f.name != "extra"]
        known = {f.name for f in own}
        # unknown keys first, as the C++ parser does: a misspelt key is named, not the one it hides
        unknown = [k for k in v if k not in known]
        if unknown and cls.STRICT:
            _fail(_join(path, unknown[0]), f"unknown key (this object has: {', '.join(sorted(known))})")
        kwargs: Dict[str, Any] = {f.name: name for f in fields(cls) if f.metadata.get("key")}
        for f in own:
            if f.name in v:
                kwargs[f.name] = f.metadata["check"](v[f.name], _join(path, f.name))
            elif f.metadata["required"] or (f.default is MISSING and f.default_factory is MISSING):  # type: ignore[misc]
                _fail(_join(path, f.name), "missing required key")
        if not cls.STRICT:
            kwargs["extra"] = {k: v[k] for k in unknown}
        return cls(**kwargs)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("key"):
                continue
            if f.name == "extra":
                out.update(_dump(value))
                continue
            if value is None and not f.metadata.get("write_none"):
                continue
            out[f.name] = _dump(value)
        return out


def _dump(v: Any) -> Any:
    if is_dataclass(v):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_dump(x) for x in v]
    return v


def _node(cls: Any) -> Callable[[Any, str], Any]:
    return lambda v, path: cls.parse(v, path)


def _named(cls: Any) -> Callable[..., Any]:
    """Parser of a table entry that records the key it sits under (Task, Segment, Variant, EngineSet)."""
    def check(v: Any, path: str, key: str) -> Any:
        return cls.parse(v, path, key)
    check.takes_key = True  # type: ignore[attr-defined]
    return check


@dataclass
class FileRef(_Node):
    """A file of the bundle: relative path, checksum and size (verified before use)."""
    file: str = _f(_relative_file)
    sha256: str = _f(_sha256)
    bytes: int = _f(_int(1))


@dataclass
class TensorSpec(_Node):
    name: str = _f(_str)
    shape: List[int] = _f(_shape)
    dtype: str = _f(_enum(*DTYPES))


@dataclass
class Normalization(_Node):
    """x = (pixel * scale - mean[c]) / std[c], applied by the caller before run()."""
    scale: float = _f(_number())
    mean: List[float] = _f(_list(_number()))
    std: List[float] = _f(_list(_number(0, exclusive=True)))


@dataclass
class InputSpec(_Node):
    name: str = _f(_str)
    shape: List[int] = _f(_shape)
    dtype: str = _f(_enum("float32"))
    layout: str = _f(_enum("NCHW"))
    normalization: Normalization = _f(_node(Normalization))
    dynamic_batch: Optional[bool] = _f(_bool, None)
    color: Optional[str] = _f(_enum("rgb", "bgr", "gray"), None)

    @property
    def batch(self) -> int:
        return self.shape[0]

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, list(self.shape), self.dtype)


@dataclass
class Task(_Node):
    name: str = _f(_str, key=True)
    kind: str = _f(_enum(*TASK_KINDS))
    metric: str = _f(_str)
    output: str = _f(_str)
    segments: List[str] = _f(_names)
    higher_is_better: Optional[bool] = _f(_bool, None)
    allowed_drop: Optional[float] = _f(_number(0), None)


@dataclass
class Segment(_Node):
    """A node of the logical DAG: which tensors it reads and writes (files live in variants)."""
    name: str = _f(_str, key=True)
    inputs: List[str] = _f(_names)
    outputs: List[str] = _f(_names)
    tasks: List[str] = _f(_names)
    shared: bool = _f(_bool)
    flops: Optional[int] = _f(_int(0), None)
    params: Optional[int] = _f(_int(0), None)


@dataclass
class VariantSegment(FileRef):
    """One segment's file in a variant, with the exact boundary shapes and dtypes of that file."""
    inputs: List[TensorSpec] = _f(_list(_node(TensorSpec)))
    outputs: List[TensorSpec] = _f(_list(_node(TensorSpec)))
    precision: Optional[str] = _f(_enum(*PRECISIONS), None)
    float_layers: Optional[List[str]] = _f(_list(_str, 0), None)

    @property
    def ref(self) -> FileRef:
        return FileRef(self.file, self.sha256, self.bytes)



@dataclass
class VariantGolden(_Node):
    outputs: Dict[str, FileRef] = _f(_table(_node(FileRef)))


@dataclass
class Variant(_Node):
    """One concrete set of files for the DAG: a precision and optionally a width configuration."""
    name: str = _f(_str, key=True)
    precision: str = _f(_enum(*PRECISIONS))
    config: Optional[Dict[str, Any]] = _f(_optional_object, None, write_none=True)
    tolerance: Optional[Dict[str, float]] = _f(_table(_number(0)), None)
    calibration: Optional[Dict[str, Any]] = _f(_optional_object, None)
    metrics: Optional[Dict[str, Any]] = _f(_object, None)
    flops: Optional[int] = _f(_int(0), None)
    latency_ms: Optional[float] = _f(_number(0), None)
    golden: Optional[VariantGolden] = _f(_node(VariantGolden), None)
    segments: Dict[str, VariantSegment] = _f(_table(_node(VariantSegment), 1), factory=dict, required=True)


@dataclass
class EngineSet(_Node):
    """Built engines of one variant for one target (key ``<target>`` or ``<target>@<variant>``)."""
    STRICT = False  # build records grow (built_with, verification): extra keys are kept
    name: str = _f(_str, key=True)
    backend: str = _f(_enum(*BACKENDS))
    variant: str = _f(_str)
    segments: Dict[str, FileRef] = _f(_table(_node(FileRef)))
    target: Optional[str] = _f(_str, None)
    precision: Optional[str] = _f(_enum(*PRECISIONS), None)
    device: Optional[str] = _f(_str, None)
    built_with: Optional[Dict[str, Any]] = _f(_object, None)
    verification: Optional[Dict[str, Any]] = _f(_object, None)
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Golden(_Node):
    """Golden I/O: normalized input samples and the fp32 outputs of ``default_variant``."""
    input: FileRef = _f(_node(FileRef))
    outputs: Dict[str, FileRef] = _f(_table(_node(FileRef)))
    samples: int = _f(_int(1, MAX_GOLDEN_SAMPLES))
    source: Optional[str] = _f(_str, None)


@dataclass
class Provenance(_Node):
    STRICT = False
    model: str = _f(_str)
    model_sha256: str = _f(_sha256)
    created: str = _f(_str)
    tools: Dict[str, str] = _f(_table(_str))
    recipe: Optional[Dict[str, Any]] = _f(_optional_object, None, write_none=True)
    extra: Dict[str, Any] = field(default_factory=dict)


def _format(v: Any, path: str) -> str:
    if v != FORMAT:
        _fail(path, f"expected '{FORMAT}', got {_show(v)}")
    return v


def _format_version(v: Any, path: str) -> int:
    if isinstance(v, bool) or v != FORMAT_VERSION:
        _fail(path, f"this mtedge reads format_version {FORMAT_VERSION}, got {_show(v)}",
              "re-export the bundle with this mtedge, or upgrade mtedge to read newer bundles")
    return v


@dataclass
class Manifest(_Node):
    """manifest.json, typed. Build it with :func:`parse`; write it with :meth:`to_dict`."""
    name: str = _f(_pattern(_BUNDLE_NAME, "a bundle name (letters, digits, '.', '_', '-')"))
    input: InputSpec = _f(_node(InputSpec))
    tasks: Dict[str, Task] = _f(_table(_named(Task), 1, named=True))
    segments: Dict[str, Segment] = _f(_table(_named(Segment), 1, named=True))
    default_variant: str = _f(_str)
    variants: Dict[str, Variant] = _f(_table(_named(Variant), 1, named=True))
    golden: Golden = _f(_node(Golden))
    provenance: Provenance = _f(_node(Provenance))
    engines: Dict[str, EngineSet] = _f(_table(_named(EngineSet)), factory=dict)
    task_models: Optional[Dict[str, FileRef]] = _f(_table(_node(FileRef), named=True), None)
    format: str = _f(_format, FORMAT)
    format_version: int = _f(_format_version, FORMAT_VERSION)

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        head = {"format": d.pop("format"), "format_version": d.pop("format_version")}
        if not self.engines:
            d.pop("engines", None)
        return {**head, **d}

    # --- the questions readers ask ---------------------------------------------------------------

    def variant(self, name: Optional[str] = None) -> Variant:
        name = name or self.default_variant
        if name not in self.variants:
            raise BundleError(f"unknown variant {name!r}; this bundle has variants: {', '.join(self.variants)}")
        return self.variants[name]

    def segments_for(self, tasks: Optional[Iterable[str]] = None) -> List[str]:
        """Segments ``tasks`` need (all when None), each once, in manifest order (topological)."""
        if tasks is None:
            return list(self.segments)
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise BundleError(f"unknown task(s) {', '.join(unknown)}; this bundle has tasks: {', '.join(self.tasks)}")
        needed = {s for t in tasks for s in self.tasks[t].segments}
        return [s for s in self.segments if s in needed]

    def file_refs(self) -> List[FileRef]:
        """Every file the manifest references, each path once (segments, golden, task models, engines)."""
        refs: List[FileRef] = []
        for v in self.variants.values():
            refs += [s.ref for s in v.segments.values()]
            if v.golden is not None:
                refs += list(v.golden.outputs.values())
        refs.append(self.golden.input)
        refs += list(self.golden.outputs.values())
        refs += list((self.task_models or {}).values())
        for e in self.engines.values():
            refs += list(e.segments.values())
        seen: Dict[str, FileRef] = {}
        for r in refs:
            seen.setdefault(r.file, r)
        return list(seen.values())

    def tensor_specs(self, variant: Optional[str] = None) -> Dict[str, TensorSpec]:
        """Every boundary tensor of a variant by name: the model input, then each segment's outputs."""
        specs = {self.input.name: self.input.spec()}
        for seg in self.variant(variant).segments.values():
            for t in seg.outputs:
                specs[t.name] = t
        return specs

    def check(self) -> "Manifest":
        """Every cross rule the C++ parser enforces (runtime/csrc/core/manifest.cpp); returns self."""
        _check_graph(self)
        for v in self.variants.values():
            _check_variant(self, v)
        if self.default_variant not in self.variants:
            _fail("default_variant", f"'{self.default_variant}' is not one of the variants ({', '.join(self.variants)})")
        for name, e in self.engines.items():
            if e.variant not in self.variants:
                _fail(f"engines.{name}.variant", f"unknown variant '{e.variant}' (this bundle has {', '.join(self.variants)})",
                      "rebuild the engines with `mtedge build`")
        for task in self.golden.outputs:
            if task not in self.tasks:
                _fail(f"golden.outputs.{task}", f"'{task}' is not a task (this bundle has {', '.join(self.tasks)})")
        return self


def _check_graph(m: Manifest) -> None:
    # Topological order: every segment reads only the model input or earlier outputs; one producer each.
    producer: Dict[str, Optional[str]] = {m.input.name: None}
    for s in m.segments.values():
        for t in s.inputs:
            if t not in producer:
                _fail(f"segments.{s.name}.inputs", f"reads '{t}', which no earlier segment produces "
                      "(segments must be listed in topological order)")
        for t in s.outputs:
            if t in producer:
                _fail(f"segments.{s.name}.outputs", f"writes '{t}', which is already produced elsewhere")
            producer[t] = s.name
    for task in m.tasks.values():
        where = f"tasks.{task.name}"
        for sn in task.segments:
            if sn not in m.segments:
                _fail(f"{where}.segments", f"unknown segment '{sn}'")
        have = set(task.segments)
        # Closed: whatever its segments read is produced inside the list.
        for sn in task.segments:
            for t in m.segments[sn].inputs:
                p = producer[t]
                if p is not None and p not in have:
                    _fail(f"{where}.segments", f"segment '{sn}' reads '{t}' from segment '{p}', which the task does not list")
        if producer.get(task.output) not in have:
            _fail(f"{where}.output", f"'{task.output}' is not produced by the task's segments")


def _check_variant(m: Manifest, v: Variant) -> None:
    # The files carry exactly the DAG's tensor names; each tensor has one shape and dtype across
    # its producer and all consumers; task outputs are float32 at the boundary.
    produced: Dict[str, TensorSpec] = {m.input.name: m.input.spec()}
    for seg in m.segments.values():
        where = f"variants.{v.name}.segments.{seg.name}"
        if seg.name not in v.segments:
            _fail(f"variants.{v.name}.segments", f"no entry for segment '{seg.name}'")
        vs = v.segments[seg.name]
        for what, logical, given in (("inputs", seg.inputs, vs.inputs), ("outputs", seg.outputs, vs.outputs)):
            if sorted(logical) != sorted(t.name for t in given):
                _fail(f"{where}.{what}", f"tensor names differ from segments.{seg.name}.{what} [{', '.join(logical)}]")
        for t in vs.inputs:
            p = produced[t.name]
            if p.shape != t.shape or p.dtype != t.dtype:
                _fail(f"{where}.inputs", f"'{t.name}' is {t.shape} {t.dtype} but its producer writes {p.shape} {p.dtype}")
        for t in vs.outputs:
            produced[t.name] = t
    for s in v.segments:
        if s not in m.segments:
            _fail(f"variants.{v.name}.segments.{s}", f"'{s}' is not in the segments DAG")
    for task in m.tasks.values():
        if produced[task.output].dtype != "float32":
            seg = next(s for s in m.segments.values() if task.output in s.outputs)
            _fail(f"variants.{v.name}.segments.{seg.name}.outputs",
                  f"task output '{task.output}' must be float32 at the boundary")


def parse(doc: Any) -> Manifest:
    """A validated :class:`Manifest` from the JSON document; raises :class:`ManifestError`."""
    if not isinstance(doc, dict):
        _fail("top level", f"expected an object, got {_show(doc)[:40]}")
    # format and version first: a newer bundle is refused for its version, not its new fields.
    for key, check in (("format", _format), ("format_version", _format_version)):
        if key not in doc:
            _fail(key, "missing required key")
        check(doc[key], key)
    return Manifest.parse(doc, "top level").check()


# variant.metrics[OPENVINO_AGREEMENT]: quantize's run of the variant's golden samples through the
# quantizing host's OpenVINO CPU plugin: {"openvino": version, "tasks": {task: {max_abs_err, tolerance, passed}}}
OPENVINO_AGREEMENT = "openvino_agreement"
# why a signed int8 variant disagrees there, and the fix (docs/quantization.md)
SIGNED_INT8_ON_OPENVINO = ("OpenVINO's CPU plugin computes int8 (signed) activations through a Concat wrongly; "
                           "for a bundle that runs on CPUs, quantize with --activations uint8 (docs/quantization.md)")


def disagreement(check: Dict[str, Dict[str, Any]]) -> str:
    """'' when every task of an agreement check passed, else which tasks did not and by how much."""
    return "; ".join(f"{t} off by {c['max_abs_err']:.3g} > tolerance {c['tolerance']:.3g}"
                     for t, c in check.items() if not c["passed"])


def signed_activations(variant: Variant) -> Optional[bool]:
    """Whether an int8 variant's activations are int8 (True) or uint8 (False), as quantize recorded
    in its calibration (``mtedge quantize --activations``); None for a variant without one."""
    return (variant.calibration or {}).get("signed_activations")


def openvino_advice(variant: Variant) -> str:
    """The fix for a variant OpenVINO computes off its golden outputs: the uint8 advice for signed
    int8 activations (the known CPU plugin defect), else '' (no known cause)."""
    return SIGNED_INT8_ON_OPENVINO if signed_activations(variant) else ""


def openvino_disagreement(variant: Variant) -> str:
    """'' unless quantize recorded that OpenVINO computed `variant` off its tolerance; else what and where.
    Metrics are free-form in the format, so a record of another shape counts as no record."""
    rec = (variant.metrics or {}).get(OPENVINO_AGREEMENT)
    tasks = rec.get("tasks") if isinstance(rec, dict) else None
    if not isinstance(tasks, dict):
        return ""
    failed = {t: c for t, c in tasks.items() if isinstance(c, dict) and c.get("passed") is False
              and all(isinstance(c.get(k), (int, float)) for k in ("max_abs_err", "tolerance"))}
    off = disagreement(failed)
    return f"{off} (OpenVINO {rec.get('openvino')}, recorded by mtedge quantize)" if off else ""


from_dict = parse
