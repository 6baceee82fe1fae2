"""Target profiles: one TOML file per device (toolchain/targets/builtin/<name>.toml, or a user's own
directory), validated by profile.schema.json.

Search order (first hit wins, so a user file can shadow a built-in one of the same name):

1. directories passed as ``extra_dirs`` (the CLI's ``--profile-dir``),
2. directories in the environment variable ``MTEDGE_TARGETS_PATH`` (``os.pathsep``-separated),
3. the built-in profiles, ``toolchain/targets/builtin/`` (shipped inside the package).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema

from toolchain.errors import SpecError

ENV_PATH = "MTEDGE_TARGETS_PATH"
SCHEMA_PATH = Path(__file__).with_name("profile.schema.json")
MIN_TENSORRT_MAJOR = 10  # csrc/backends/tensorrt is written against the TensorRT 10 API


class TargetError(SpecError):
    """A target profile is unknown or malformed, or cannot do what was asked."""


@dataclass(frozen=True)
class TargetProfile:
    """One device. ``data`` is the validated TOML; the properties are the fields code reads."""

    name: str
    path: Path
    data: dict[str, Any] = field(repr=False)
    builtin: bool = True

    @property
    def backend(self) -> str:
        return self.data["backend"]

    @property
    def software(self) -> dict[str, str]:
        return self.data["software"]

    @property
    def tensorrt_version(self) -> str | None:
        return self.software.get("tensorrt")

    @property
    def dla_cores(self) -> int:
        return int(self.data.get("dla", {}).get("cores", 0))

    @property
    def memory_mb(self) -> int:
        return int(self.data["memory"]["total_mb"])

    @property
    def bandwidth_gbs(self) -> float:
        return float(self.data["memory"]["bandwidth_gbs"])

    @property
    def precisions(self) -> list[str]:
        return list(self.data["precisions"])

    @property
    def channels(self) -> dict[str, int]:
        return dict(self.data["channels"])

    def channel_multiple(self, precision: str) -> int:
        """Preferred channel multiple for ``precision`` (``mixed`` uses the int8 one)."""
        return int(self.channels["int8" if precision == "mixed" else precision])

    def peak_ops_per_s(self, precision: str) -> float:
        """Dense peak math throughput in ops/s for a precision (``mixed``: int8)."""
        key = {"fp32": "fp32_tflops", "fp16": "fp16_tflops"}.get(precision, "int8_tops")
        return float(self.data["peak"][key]) * 1e12

    @property
    def default_workspace_mb(self) -> int:
        """Builder workspace: the profile's ``build.workspace_mb``, else a quarter of memory in [256, 4096]."""
        explicit = self.data.get("build", {}).get("workspace_mb")
        return int(explicit) if explicit else max(256, min(4096, self.memory_mb // 4))

    def buildable(self) -> tuple[bool, str]:
        """(True, "") when `mtedge build` can make engines for this target, else (False, why)."""
        if self.backend != "tensorrt" or tensorrt_major(self.tensorrt_version or "0") >= MIN_TENSORRT_MAJOR:
            return True, ""
        return False, (f"TensorRT {self.tensorrt_version} (JetPack {self.software.get('jetpack')}); "
                       f"mtedge needs TensorRT >= {MIN_TENSORRT_MAJOR}")


def tensorrt_major(version: str) -> int:
    """Major version of a TensorRT version string such as ``"10.3"`` or ``"8.5.2"``."""
    try:
        return int(str(version).split(".")[0])
    except ValueError as e:
        raise TargetError(f"bad TensorRT version {version!r}; expected e.g. '10.3'") from e


@lru_cache(maxsize=1)
def profile_schema() -> dict[str, Any]:
    """The JSON Schema every profile must satisfy."""
    return json.loads(SCHEMA_PATH.read_text())


def builtin_dir() -> Path:
    """Where the profiles shipped with mtedge live."""
    return Path(__file__).with_name("builtin")


def search_path(extra_dirs: Iterable[str | os.PathLike] = ()) -> list[tuple[Path, bool]]:
    """(directory, is_builtin) in lookup order; user directories that do not exist are an error."""
    dirs: list[tuple[Path, bool]] = []
    env = [p for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    for source, items in (("--profile-dir", list(extra_dirs)), (ENV_PATH, env)):
        for d in items:
            p = Path(d).expanduser()
            if not p.is_dir():
                raise TargetError(f"{source} {str(p)!r} is not a directory; point it at a folder of <name>.toml profiles")
            dirs.append((p, False))
    dirs.append((builtin_dir(), True))
    return dirs


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true/false",
               "array": "a list", "object": "a table"}


def _schema_at(schema: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    node = schema
    for key in path:  # an int indexes an array's items, a str an object's properties
        node = node.get("items", {}) if isinstance(key, int) else node.get("properties", {}).get(key, {})
    return node


def _expected(node: dict[str, Any]) -> str:
    if "const" in node:
        return f"exactly {node['const']!r}"
    if "enum" in node:
        return "one of " + ", ".join(repr(v) for v in node["enum"])
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(_TYPE_WORDS.get(x, x) for x in t)
    words = _TYPE_WORDS.get(t, "a value")
    if "pattern" in node and t == "string":
        words += f" matching {node['pattern']}"
    if "minimum" in node or "exclusiveMinimum" in node:
        bound = node.get("minimum", node.get("exclusiveMinimum"))
        words += f" {'>=' if 'minimum' in node else '>'} {bound}"
    return words


def _describe(err: jsonschema.ValidationError, schema: dict[str, Any], file: Path) -> str:
    """One message that names the file, the field and the expected type."""
    where = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        missing = next((m for m in err.validator_value if m not in (err.instance or {})), "?")
        field_path = f"{where}.{missing}" if where else missing
        node = _schema_at(schema, [*err.absolute_path, missing])
        return f"{file}: missing field '{field_path}' ({_expected(node) if node else 'see the schema'})"
    if err.validator == "additionalProperties":
        known = sorted(_schema_at(schema, list(err.absolute_path)).get("properties", {}) if where
                       else schema["properties"])
        extra = sorted(set(err.instance) - set(known))
        field_path = ".".join(x for x in (where, extra[0] if extra else "?") if x)
        return f"{file}: unknown field '{field_path}'; known fields here: {', '.join(known)}"
    node = _schema_at(schema, list(err.absolute_path))
    got = f"{err.instance!r} ({type(err.instance).__name__})"
    # for conditional (if/then) failures the local node may be narrower than the plain one
    expected = _expected(err.schema) if err.validator in ("const", "enum") else _expected(node or err.schema)
    return f"{file}: field '{where or '<top>'}' is {got}; expected {expected}"


def validate_profile_data(data: dict[str, Any], file: Path) -> None:
    """Raise TargetError naming ``file``, the field and the expected type on the first problem."""
    schema = profile_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        raise TargetError(_describe(errors[0], schema, file))
    if data["name"] != file.stem:
        raise TargetError(f"{file}: field 'name' is {data['name']!r} but the file is {file.name}; "
                          f"rename the file to {data['name']}.toml or change the name")


def load_profile_file(path: str | os.PathLike, *, builtin: bool = False) -> TargetProfile:
    """Parse and validate one profile file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{p}: not valid TOML: {e}") from e
    except OSError as e:
        raise TargetError(f"cannot read target profile {p}: {e.strerror}") from e
    validate_profile_data(data, p)
    return TargetProfile(name=data["name"], path=p, data=data, builtin=builtin)


def list_profiles(extra_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, TargetProfile]:
    """Every profile on the search path, by name, sorted; earlier directories shadow later ones."""
    found: dict[str, TargetProfile] = {}
    for directory, is_builtin in search_path(extra_dirs):
        for f in sorted(directory.glob("*.toml")):
            if f.stem not in found:
                found[f.stem] = load_profile_file(f, builtin=is_builtin)
    return dict(sorted(found.items()))


def load_profile(name: str, extra_dirs: Iterable[str | os.PathLike] = ()) -> TargetProfile:
    """The profile called ``name`` (or at the path ``name`` when it ends in .toml)."""
    if name.endswith(".toml"):
        return load_profile_file(name)
    extra_dirs = list(extra_dirs)
    for directory, is_builtin in search_path(extra_dirs):
        f = directory / f"{name}.toml"
        if f.is_file():
            return load_profile_file(f, builtin=is_builtin)
    known = ", ".join(sorted({f.stem for d, _ in search_path(extra_dirs) for f in d.glob("*.toml")}))
    raise TargetError(f"unknown target {name!r}; known: {known} (or write <name>.toml into a folder of "
                      f"profiles passed via --profile-dir / {ENV_PATH})")
