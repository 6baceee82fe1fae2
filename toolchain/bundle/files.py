"""File helpers for bundles: checksums, atomic writes, atomic directory publication."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from toolchain.errors import OutputError

_WHY = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
        errno.ENOTDIR: "a parent path is a file, not a directory",
        errno.EEXIST: "a parent path is an existing file, not a directory"}


def output_error(path: str | Path, e: OSError) -> OutputError:
    """A named error for an artifact that cannot be written (read-only, full, not a directory)."""
    why = _WHY.get(e.errno or 0, e.strerror or str(e))
    err = OutputError(f"cannot write {path}: {why} ({errno.errorcode.get(e.errno or 0, '?')}); "
                      "write to another output directory (-o) or free space there; nothing was published")
    err.errno = e.errno
    return err


@contextlib.contextmanager
def named_output_errors(path: str | Path) -> Iterator[None]:
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        if e.errno in _WHY:
            raise output_error(path, e) from e
        raise


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_document(path: str | Path, error: type[Exception], missing: str, invalid: Callable[[str], str]) -> Any:
    """The JSON or YAML (by suffix) document in `path`. No file raises ``error(missing)``; a file that
    does not parse raises ``error(invalid(why))``: each caller names its own fix (an interrupted
    export, a rerun of the build script, a YAML typo)."""
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    import yaml

    try:
        text = path.read_text()
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except json.JSONDecodeError as e:
        raise error(invalid(f"line {e.lineno}: {e.msg}")) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise error(invalid(str(e))) from None


def file_ref(root: Path, path: Path) -> dict[str, Any]:
    """{file, sha256, bytes} of `path`, relative to the bundle `root`."""
    return {"file": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    with named_output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644 & ~_umask())  # mkstemp creates 0600; artifacts are meant to be shared
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, doc: Any) -> None:
    write_bytes_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())


@contextlib.contextmanager
def staged_directory(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `final` in one rename.

    An interrupted writer leaves only `NAME.tmp-<pid>` behind, which never loads as a bundle
    (readers require the exact path, and the manifest is written last anyway).
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass --force to replace it")
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    with named_output_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        with named_output_errors(final):
            yield tmp
            old = final.with_name(f"{final.name}.old-{os.getpid()}")
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
