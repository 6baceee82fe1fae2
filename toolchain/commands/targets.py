"""`mtedge targets`, `mtedge build`, `mtedge profile`: device profiles, engine builds, latency tables."""

from __future__ import annotations

import json
from pathlib import Path

import click

_profile_dir = click.option("--profile-dir", "profile_dirs", multiple=True, type=click.Path(file_okay=False),
                            help="extra folder of <name>.toml profiles (repeatable; also $MTEDGE_TARGETS_PATH)")


def _console():
    """A rich console; wide when output is not a terminal, so piped tables are not squeezed to 80 columns."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@_profile_dir
def targets(as_json: bool, profile_dirs: tuple[str, ...]) -> None:
    """List the device profiles `build` and `profile` accept."""
    from toolchain.targets.profile import list_profiles

    profiles = list_profiles(profile_dirs)
    if as_json:
        out = [{**p.data, "path": str(p.path), "builtin": p.builtin, "buildable": ok, "why_not": why or None}
               for p in profiles.values() for ok, why in [p.buildable()]]
        click.echo(json.dumps(out, indent=2))
        return
    from rich.table import Column, Table

    right = [Column(c, justify="right") for c in ("SM", "CUDA cores", "DLA", "memory", "GB/s", "fp16 TFLOPS",
                                                   "int8 TOPS", "channels fp16/int8")]
    table = Table(Column("name", style="bold"), "backend", "JetPack", "TensorRT", "CUDA", *right, "power", "build",
                  title="mtedge targets")
    for p in profiles.values():
        sw, gpu, peak = p.software, p.data.get("gpu", {}), p.data["peak"]
        ok, why = p.buildable()
        name = p.name if p.builtin else f"{p.name} [dim](user)[/dim]"
        table.add_row(name, p.backend, sw.get("jetpack", "-"), sw.get("tensorrt", "-"), sw.get("cuda", "-"),
                      str(gpu.get("sm_count", "-")), str(gpu.get("cuda_cores", "-")), str(p.dla_cores),
                      f"{p.memory_mb // 1024} GB", f"{p.bandwidth_gbs:g}", f"{peak['fp16_tflops']:g}",
                      f"{peak['int8_tops']:g}", f"{p.channels['fp16']}/{p.channels['int8']}",
                      p.data["power"]["default_mode"], "yes" if ok else "[red]no[/red]: TensorRT < 10")
    _console().print(table)


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--target", "-t", required=True, help="target profile name (see `mtedge targets`)")
@click.option("--variant", "variants", multiple=True, help="variant to build (repeatable); default: every variant")
@click.option("--dla", is_flag=True, help="run on a DLA core with GPU fallback (fp16/int8 variants, TensorRT 10)")
@click.option("--dla-core", type=int, default=0, show_default=True, help="which DLA core with --dla")
@click.option("--strongly-typed/--no-strongly-typed", default=None,
              help="TensorRT strongly typed network (precision from the ONNX); default: only for TensorRT >= 11")
@click.option("--workspace-mb", type=int, default=None, help="builder workspace (default: from the target)")
@click.option("--emit-script", type=click.Path(dir_okay=False), default=None,
              help="write the trtexec build script for the device to FILE instead of building")
@click.option("--import-engines", "import_engines", is_flag=True,
              help="record engines built on the device by the emitted script (engines/<target>/build-record.json)")
@click.option("--trtexec", default=None, help="trtexec to use (default: PATH, then /usr/src/tensorrt/bin/trtexec)")
@click.option("--no-verify", is_flag=True, help="skip the golden I/O check")
@_profile_dir
def build(bundle: str, target: str, variants: tuple[str, ...], dla: bool, dla_core: int, strongly_typed: bool | None,
          workspace_mb: int | None, emit_script: str | None, import_engines: bool, trtexec: str | None,
          no_verify: bool, profile_dirs: tuple[str, ...]) -> None:
    """Build engines of BUNDLE for a target, verify them on the golden I/O, record them in the manifest."""
    from toolchain.progress import progress_bar
    from toolchain.targets import build as b
    from toolchain.targets.plan import BuildOptions
    from toolchain.targets.profile import load_profile

    if emit_script and import_engines:
        raise click.UsageError("--emit-script and --import-engines are two steps; use one at a time")
    profile = load_profile(target, profile_dirs)
    options = BuildOptions(variants=variants, dla=dla, dla_core=dla_core, strongly_typed=strongly_typed,
                           workspace_mb=workspace_mb)
    console = _console()
    if emit_script:
        plan = b.emit_script(bundle, profile, options, emit_script)
        for note in plan.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        console.print(f"wrote {emit_script}: {len(plan.steps)} trtexec build(s) for {profile.name} "
                      f"(TensorRT {plan.tensorrt_version}). On the device run: bash {Path(emit_script).name} "
                      f"{Path(bundle).name}\nthen copy {Path(bundle).name}/engines/{profile.name}/ back and run "
                      f"`mtedge build {bundle} --target {profile.name} --import-engines`")
        return
    if import_engines:
        result = b.import_engines(bundle, profile)
    else:
        with progress_bar(transient=True) as progress:
            state: dict = {}

            def on_plan(plan) -> None:
                state["task"] = progress.add_task(f"building {profile.name}", total=len(plan.steps))

            def on_step(step) -> None:
                progress.update(state["task"], advance=1, description=f"{step.variant}/{step.segment}")

            result = b.build(bundle, profile, options, verify=not no_verify, trtexec=trtexec,
                             on_plan=on_plan, on_step=on_step)
        for note in result.plan.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
    for key, entry in result.entries.items():
        v = entry["verification"]
        detail = ", ".join(f"{t} err {c['max_abs_err']:.2g} <= {c['tolerance']:.2g}" for t, c in v.get("tasks", {}).items())
        status = {"passed": "[green]verified[/green]", "not-run": "[yellow]not verified[/yellow]"}.get(v["status"], v["status"])
        console.print(f"engines[{key!r}]: {len(entry['segments'])} segment(s), {entry['precision']}, "
                      f"{entry['device']}, via {result.via}; {status} {detail or v.get('reason', '')}")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--target", "-t", required=True, help="target profile name (see `mtedge targets`)")
@click.option("--variant", default=None, help="variant to profile (default: the bundle's default variant)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="latency table JSON (default: <bundle name>.<target>.latency.json)")
@click.option("--runs", type=int, default=20, show_default=True, help="timed runs per segment (median)")
@click.option("--estimate", is_flag=True, help="roofline estimate even where a measurement is possible")
@_profile_dir
def profile(bundle: str, target: str, variant: str | None, output: str | None, runs: int, estimate: bool,
            profile_dirs: tuple[str, ...]) -> None:
    """Per-segment and per-layer latency of BUNDLE on a target: measured where it runs, else estimated."""
    from rich.table import Column, Table

    from toolchain.bundle import Bundle
    from toolchain.targets.latency import profile_bundle
    from toolchain.targets.profile import load_profile

    prof = load_profile(target, profile_dirs)
    opened = Bundle.open(bundle)
    root, manifest = opened.root, opened.manifest
    variant = variant or manifest.default_variant
    table = profile_bundle(root, manifest, prof, variant, runs=runs, estimate=estimate)
    out = Path(output or f"{manifest.name}.{prof.name}.latency.json")
    table.save(out)
    view = Table("segment", Column("median ms", justify="right"), "top layers",
                 title=f"{manifest.name} [{variant}] on {prof.name}: {table.source}")
    for seg, ms in table.segments.items():
        top = sorted(((v, k) for k, v in table.layers.items() if table.layer_info.get(k, {}).get("segment") == seg),
                     reverse=True)[:3]
        view.add_row(seg, f"{ms:.4f}", ", ".join(f"{k} {v:.4f}" for v, k in top if v > 0))
    console = _console()
    console.print(view)
    console.print(f"wrote {out}")
