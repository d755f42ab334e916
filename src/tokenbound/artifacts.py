"""Self-describing artifacts (DESIGN §1, §4): manifests, hashes and atomic writes.

Every stage writes a directory (or file) with a ``manifest.json`` that says what it is (``kind``),
its inputs by sha256, its config and the versions that produced it. Writes are atomic: a stage
builds its output under a temporary sibling name and renames it into place only when complete,
so an interrupted run never leaves a half-written artifact behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import TokenboundError

# The `kind` field of manifest.json, one per artifact type (DESIGN §4).
KIND_TOKENSTORE = "tokenbound.tokenstore"
KIND_RUN = "tokenbound.run"
KIND_COMPRESSED = "tokenbound.compressed_model"
KIND_MARKOV = "tokenbound.markov_model"
KIND_TOKENSTATS = "tokenbound.tokenstats"

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_dir(path: str | os.PathLike, exclude: tuple[str, ...] = (MANIFEST,)) -> str:
    """Hash of a directory's files (relative names and contents, sorted), excluding `exclude`."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel in exclude:
            continue
        h.update(rel.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the software that produced an artifact (for provenance, never for logic)."""
    from . import __version__

    out = {"tokenbound": __version__, "python": platform.python_version(), "platform": sys.platform}
    for mod in ("numpy", "torch", "tokenizers", "constriction", "transformers"):
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, "__version__"):
            out[mod] = str(m.__version__)
    return out


def make_manifest(kind: str, **fields: Any) -> dict[str, Any]:
    """A manifest dict: kind, creation time, versions, then the caller's fields (inputs, config, ...)."""
    return {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions(), **fields}


def dumps_canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, fixed separators) so that equal content hashes equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: str | os.PathLike, binary: bool, write) -> None:
    """Write through `write(file)` into a temp file beside `path`, then rename it over `path`.

    mkstemp creates files readable by the owner only; the result gets the mode an ordinary open() would
    (0666 minus the umask), so artifacts can be shared like any other file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    def dump(f) -> None:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")

    _atomic_write(path, False, dump)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically."""
    _atomic_write(path, True, lambda f: f.write(data))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise TokenboundError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise TokenboundError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def read_manifest(directory: str | os.PathLike, expect_kind: str | None = None) -> dict[str, Any]:
    """Read DIR/manifest.json; with `expect_kind`, fail with a one-line error if it is another kind."""
    directory = Path(directory)
    if not directory.exists():
        raise TokenboundError(f"{directory}: no such file or directory")
    man = read_json(directory / MANIFEST, what="manifest.json")
    if expect_kind is not None and man.get("kind") != expect_kind:
        raise TokenboundError(f"{directory}: expected a {expect_kind} artifact, found {man.get('kind')!r}")
    return man


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield a temporary directory that becomes `out` only if the block completes.

    Refuses an existing `out` unless `force` (then it is replaced only after success).
    On any exception the temporary directory is removed and `out` is untouched.
    """
    out = Path(out)
    if out.exists() and not force:
        raise TokenboundError(f"{flag} {out}: already exists (use --force to overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would otherwise become the artifact's mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory `src` to `dst`, replacing an older `dst` only once `src` is in place."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
