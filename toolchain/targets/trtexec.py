"""trtexec: command lines for a build plan, a build script for the device, and a local runner.

Flags used (TensorRT 10 trtexec, see `trtexec --help` and the "Command-Line Programs" page of the
TensorRT documentation): --onnx, --saveEngine, --memPoolSize=workspace:<N>M, --timingCacheFile,
--skipInference, --profilingVerbosity=detailed, --stronglyTyped, --fp16, --int8, --noTF32,
--useDLACore, --allowGPUFallback.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from toolchain.targets.plan import BuildPlan, EngineBuildStep
from toolchain.targets.profile import TargetError, tensorrt_major

#: where JetPack installs trtexec (it is not on PATH by default)
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
RECORD_NAME = "build-record.json"
_BANNER = re.compile(r"\[TensorRT v(\d+)\]")
_NO_STEP = EngineBuildStep(*[""] * 7, device="GPU")  # what plan_digest records for a variant without steps


def trtexec_args(step: EngineBuildStep, engine_out: str | None = None) -> list[str]:
    """The trtexec arguments (without the program) that build ``step``.

    ``engine_out`` overrides where the engine is written (the script writes a temp name and renames).
    """
    if step.backend != "tensorrt":
        raise TargetError(f"step {step.segment!r} is for {step.backend}, not TensorRT")
    args = [f"--onnx={step.onnx}", f"--saveEngine={engine_out or step.engine_path}",
            f"--memPoolSize=workspace:{step.workspace_mb}M", "--skipInference", "--profilingVerbosity=detailed"]
    if step.timing_cache:
        args.append(f"--timingCacheFile={step.timing_cache}")
    if step.strongly_typed:
        args.append("--stronglyTyped")
    else:
        args += [f"--{f.lower()}" for f in step.builder_flags if f in ("FP16", "INT8")]
    if not step.tf32:
        args.append("--noTF32")
    if step.dla_core is not None:
        args.append(f"--useDLACore={step.dla_core}")
        if "GPU_FALLBACK" in step.builder_flags:
            args.append("--allowGPUFallback")
    return args


def parse_trtexec_version(output: str) -> tuple[int, int, int]:
    """(major, minor, patch) from trtexec's banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v100300]``.

    TensorRT >= 10 encodes MMmmpp (100300 = 10.3.0); 8.x encodes Mmpp (8502 = 8.5.2).
    """
    if not (m := _BANNER.search(output)):
        raise TargetError("could not read the TensorRT version from trtexec's output "
                          "(expected a line with '[TensorRT vNNNN]')")
    v = int(m.group(1))
    if v >= 100000:
        return v // 10000, (v // 100) % 100, v % 100
    return v // 1000, (v // 100) % 10, v % 100


def find_trtexec(explicit: str | None = None) -> str | None:
    """Path of trtexec: ``explicit``, then PATH, then JetPack's install location; None if absent."""
    if explicit:
        return explicit if Path(explicit).is_file() or shutil.which(explicit) else None
    return shutil.which("trtexec") or (JETPACK_TRTEXEC if Path(JETPACK_TRTEXEC).is_file() else None)


def run_trtexec_plan(plan: BuildPlan, bundle: Path, trtexec: str, staging: Path,
                     on_step: Callable[[EngineBuildStep], None] = lambda s: None) -> tuple[str, dict[str, Path]]:
    """Build every step with trtexec, engines into ``staging`` (same relative paths).

    Returns (TensorRT version string, {engine_path: built file}). Raises TargetError with the tail
    of trtexec's log when a build fails or the TensorRT major version differs from the plan's.
    """
    probe = subprocess.run([trtexec, "--help"], capture_output=True, text=True, cwd=bundle)
    major, minor, patch = parse_trtexec_version(probe.stdout + probe.stderr)
    version = f"{major}.{minor}.{patch}"
    if major != tensorrt_major(plan.tensorrt_version or "0"):
        raise TargetError(f"{trtexec} is TensorRT {version} but target {plan.target!r} expects TensorRT "
                          f"{plan.tensorrt_version}; use the matching JetPack or a profile that says {version}")
    built: dict[str, Path] = {}
    for step in plan.steps:
        out = staging / step.engine_path
        out.parent.mkdir(parents=True, exist_ok=True)
        args = trtexec_args(step, engine_out=str(out))
        if step.timing_cache:
            cache = staging / step.timing_cache
            cache.parent.mkdir(parents=True, exist_ok=True)
            args = [a if not a.startswith("--timingCacheFile=") else f"--timingCacheFile={cache}" for a in args]
        proc = subprocess.run([trtexec, *args], capture_output=True, text=True, cwd=bundle)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise TargetError(f"trtexec failed on segment {step.segment!r} of variant {step.variant!r} "
                              f"(exit {proc.returncode}):\n{tail}")
        built[step.engine_path] = out
        on_step(step)
    return version, built


def emit_build_script(plan: BuildPlan, bundle_name: str) -> str:
    """A bash script that builds ``plan`` with trtexec on the device, inside the bundle directory.

    Usage on the device: ``bash build-<target>.sh [BUNDLE_DIR]`` (default: the current directory).
    It checks trtexec exists and is the planned TensorRT major version, checks every ONNX file's
    sha256, builds one engine per segment (temp name + mv, so an interrupted build leaves no
    half-written engine), then writes ``engines/<target>/build-record.json`` with the sha256 and
    size of every engine. Bring ``engines/<target>/`` back into the bundle and run
    ``mtedge build NAME.mtb --target <target> --import-engines`` to record them in the manifest.
    """
    if plan.backend != "tensorrt":
        raise TargetError(f"--emit-script writes trtexec scripts for TensorRT targets; {plan.target!r} uses "
                          f"{plan.backend} and builds here directly")
    q = shlex.quote
    want_major = tensorrt_major(plan.tensorrt_version or "0")
    record = f"engines/{plan.target}/{RECORD_NAME}"
    lines = [
        "#!/usr/bin/env bash",
        f"# Build TensorRT engines of bundle {bundle_name!r} for target {plan.target!r} (generated by `mtedge build --emit-script`).",
        f"# Run it on the device:  bash {q('build-' + plan.target + '.sh')} /path/to/{bundle_name}.mtb",
        f"# then copy engines/{plan.target}/ back into the bundle and run:",
        f"#   mtedge build {bundle_name}.mtb --target {plan.target} --import-engines",
        "set -euo pipefail",
        "",
        'BUNDLE="${1:-.}"',
        'cd "$BUNDLE"',
        '[ -f manifest.json ] || { echo "error: $PWD has no manifest.json; pass the bundle directory" >&2; exit 2; }',
        "",
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || true)}"',
        f'if [ -z "$TRTEXEC" ] && [ -x {JETPACK_TRTEXEC} ]; then TRTEXEC={JETPACK_TRTEXEC}; fi',
        'if [ -z "$TRTEXEC" ]; then',
        f'  echo "error: trtexec not found (not on PATH, not at {JETPACK_TRTEXEC}); install TensorRT from JetPack '
        f'(sudo apt install nvidia-jetpack) or set TRTEXEC=/path/to/trtexec" >&2',
        "  exit 2",
        "fi",
        'BANNER="$("$TRTEXEC" --help 2>&1 | grep -o "TensorRT v[0-9]*" | head -n1 || true)"',
        'CODE="${BANNER#TensorRT v}"',
        'if [ -z "$CODE" ]; then echo "error: cannot read the TensorRT version from $TRTEXEC --help" >&2; exit 2; fi',
        'if [ "$CODE" -ge 100000 ]; then MAJOR=$((CODE / 10000)); MINOR=$((CODE / 100 % 100)); PATCH=$((CODE % 100));',
        'else MAJOR=$((CODE / 1000)); MINOR=$((CODE / 100 % 10)); PATCH=$((CODE % 100)); fi',
        'TRT_VERSION="$MAJOR.$MINOR.$PATCH"',
        f'if [ "$MAJOR" -ne {want_major} ]; then',
        f'  echo "error: $TRTEXEC is TensorRT $TRT_VERSION; this plan is for TensorRT {plan.tensorrt_version} '
        f'(target {plan.target})" >&2',
        "  exit 2",
        "fi",
        'echo "using $TRTEXEC (TensorRT $TRT_VERSION)"',
        "",
        "# the ONNX files must be the ones the plan was made from",
        "sha256sum -c --quiet <<'SUMS'",
        *sorted({f"{s.onnx_sha256}  {s.onnx}" for s in plan.steps}),
        "SUMS",
        "",
        f"mkdir -p {' '.join(sorted({q(str(Path(s.engine_path).parent)) for s in plan.steps}))}",
        "build() {  # build ENGINE_PATH trtexec-args...: write to a temp name, rename when complete",
        '  local out="$1"; shift',
        '  echo "== $out"',
        '  "$TRTEXEC" --saveEngine="$out.tmp" "$@" > "$out.log" 2>&1 || { tail -n 20 "$out.log" >&2; '
        'echo "error: trtexec failed for $out (log: $out.log)" >&2; exit 1; }',
        '  mv -f "$out.tmp" "$out"',
        "}",
        "",
    ]
    for step in plan.steps:
        args = [a for a in trtexec_args(step) if not a.startswith("--saveEngine=")]
        lines.append(f"build {q(step.engine_path)} " + " ".join(q(a) for a in args))
    lines += [
        "",
        "# record what was built; `mtedge build --import-engines` checks it against the bundle",
        "entry() {  # entry SEGMENT VARIANT ENGINE ONNX_SHA256",
        '  printf \'    {"segment": "%s", "variant": "%s", "file": "%s", "sha256": "%s", "bytes": %s, "onnx_sha256": "%s"}\' \\',
        '    "$1" "$2" "$3" "$(sha256sum "$3" | cut -d" " -f1)" "$(stat -c %s "$3")" "$4"',
        "}",
        "MODEL=\"$(tr -d '\\0' < /proc/device-tree/model 2>/dev/null || uname -m)\"",
        "{",
        '  printf \'{\\n  "format": "mtedge-engine-record",\\n  "format_version": 1,\\n\'',
        f'  printf \'  "target": "{plan.target}",\\n  "bundle": "{bundle_name}",\\n  "backend": "tensorrt",\\n\'',
        f'  printf \'  "tensorrt": "%s",\\n  "device_model": "%s",\\n  "plan": %s,\\n  "engines": [\\n\' '
        f'"$TRT_VERSION" "$MODEL" {q(json.dumps(plan_digest(plan)))}',
    ]
    for i, step in enumerate(plan.steps):
        sep = ",\\n" if i < len(plan.steps) - 1 else "\\n"
        lines.append(f"  entry {q(step.segment)} {q(step.variant)} {q(step.engine_path)} {step.onnx_sha256}; printf '{sep}'")
    lines += [
        "  printf '  ]\\n}\\n'",
        f"}} > {q(record)}.tmp",
        f"mv -f {q(record)}.tmp {q(record)}",
        f'echo "built {len(plan.steps)} engine(s); record: $PWD/{record}"',
        f'echo "next: copy engines/{plan.target}/ into the bundle on your host and run '
        f'mtedge build {bundle_name}.mtb --target {plan.target} --import-engines"',
        "",
    ]
    return "\n".join(lines)


def plan_digest(plan: BuildPlan) -> dict:
    """The parts of a plan the import step re-checks (variants, keys, flags), as JSON-able data."""
    firsts = {vp.variant: (vp, vp.steps[0] if vp.steps else _NO_STEP) for vp in plan.variants}
    return {"target": plan.target, "tensorrt": plan.tensorrt_version,
            "variants": {v: {"key": vp.key, "precision": vp.precision, "strongly_typed": s.strongly_typed,
                             "flags": list(s.builder_flags), "device": s.device, "dla_core": s.dla_core,
                             "workspace_mb": s.workspace_mb} for v, (vp, s) in firsts.items()}}
