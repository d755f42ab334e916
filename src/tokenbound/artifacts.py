"""Self-describing artifacts (docs/design.md §1, §4): manifests, hashes and atomic writes.

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
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import TokenboundError

# The `kind` field of manifest.json, one per artifact type (docs/design.md §4).
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


def path_error(message: str, path: str | os.PathLike, param: str | None = None) -> TokenboundError:
    """A one-line error about `path`: under the parameter that gave it (``param PATH: message``, which the CLI
    shows as ``--flag PATH: message``) when `param` is given, else under the path itself."""
    return TokenboundError(message, param=param, value=path) if param else TokenboundError(f"{path}: {message}")


def ensure_parent_dir(path: str | os.PathLike, param: str | None = None) -> list[Path]:
    """Create the folder that will hold `path` (and its missing parents); return the folders it created.

    Anything in the way is a one-line error naming `param` (or the path) instead of an OSError traceback: a
    regular file where a folder should be, a folder that cannot be written, a read-only file system.
    """
    path = Path(path)
    parent = path.parent
    existing = parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise path_error(f"{existing} is not a directory", path, param)
    made = [d for d in (parent, *parent.parents) if not os.path.lexists(d)]
    if not os.access(existing, os.W_OK | os.X_OK):
        raise path_error(f"cannot write in {existing} (permission denied)", path, param)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise path_error(f"cannot create the folder {parent} ({e.strerror or e})", path, param) from None
    return made


def remove_empty_dirs(made: list[Path]) -> None:
    """Remove the folders ``ensure_parent_dir`` created (innermost first), stopping at one that is not empty."""
    for d in made:
        try:
            d.rmdir()
        except OSError:
            break


def _temp_in(parent: Path, path: Path, param: str | None, make) -> Any:
    """``make()`` (mkstemp / mkdtemp in `parent`), with an OSError turned into a one-line error about `path`."""
    try:
        return make()
    except OSError as e:
        raise path_error(f"cannot write in {parent} ({e.strerror or e})", path, param) from None


def _atomic_write(path: str | os.PathLike, binary: bool, write, param: str | None = None) -> None:
    """Write through `write(file)` into a temp file beside `path`, then rename it over `path`.

    mkstemp creates files readable by the owner only; the result gets the mode an ordinary open() would
    (0666 minus the umask), so artifacts can be shared like any other file. A directory at `path` or a parent
    that cannot be created or written is a one-line error naming `param` (or the path).
    """
    path = Path(path)
    if path.is_dir():
        raise path_error("is a directory (give a file name)", path, param)
    ensure_parent_dir(path, param)
    fd, tmp = _temp_in(path.parent, path, param,
                       lambda: tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
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


def write_json(path: str | os.PathLike, obj: Any, param: str | None = None) -> None:
    """Write JSON atomically (temp file in the same directory, then rename); errors name `param` (the caller's
    parameter that gave `path`) or the path."""
    def dump(f) -> None:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")

    _atomic_write(path, False, dump, param)


def write_bytes(path: str | os.PathLike, data: bytes, param: str | None = None) -> None:
    """Write bytes atomically; errors name `param` or the path."""
    _atomic_write(path, True, lambda f: f.write(data), param)


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
    if not directory.is_dir():
        raise TokenboundError(f"{directory}: is a file, not an artifact directory (one holding a {MANIFEST})")
    if os.path.exists(directory / MANIFEST) and not is_regular_file(directory / MANIFEST):
        raise TokenboundError(f"{directory / MANIFEST}: not a regular file")  # a FIFO or device would block
    man = read_json(directory / MANIFEST, what="manifest.json")
    if expect_kind is not None and man.get("kind") != expect_kind:
        raise TokenboundError(f"{directory}: expected a {expect_kind} artifact, found {man.get('kind')!r}")
    return man


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, force: bool = False, param: str = "out") -> Iterator[Path]:
    """Yield a temporary directory that becomes `out` only if the block completes.

    Refuses an existing `out` unless `force` (then it is replaced only after success).
    On any exception the temporary directory is removed and `out` is untouched. Errors name `param`, the
    caller's parameter that gave `out`.
    """
    out = Path(out)
    if out.exists() and not force:
        raise TokenboundError("already exists (use --force to overwrite)", param=param, value=out)
    if out.exists() and not out.is_dir():
        raise TokenboundError("is a file, not a directory", param=param, value=out)
    made = ensure_parent_dir(out, param)
    try:
        tmp = Path(_temp_in(out.parent, out, param,
                            lambda: tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)))
    except BaseException:
        remove_empty_dirs(made)
        raise
    tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would otherwise become the artifact's mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty_dirs(made)
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


# -- paths between artifacts ----------------------------------------------------------------------------------
# An artifact that refers to another one (a certificate to its model and store, a Run to its training store, a
# CompressedModel to its source) records the path *relative to itself* (its directory; a certificate file's
# folder), marked ``"relative_to": "artifact"``, plus the absolute path at writing time as a hint only. Loading
# resolves the relative path against the referring artifact's location, so a folder of artifacts can be moved
# as a whole; the absolute hint is used only when the relative path is gone and the target's sha256 matches.
# A reference without the marker (older artifacts) holds a path relative to the directory the command ran in.
RELATIVE_TO_ARTIFACT = "artifact"


def path_record(target: str | os.PathLike, referrer_dir: str | os.PathLike) -> dict[str, str]:
    """``{"path", "relative_to", "abs_path"}`` of `target` as seen from the artifact in `referrer_dir`."""
    target_abs = os.path.abspath(target)
    try:
        rel = os.path.relpath(target_abs, os.path.abspath(referrer_dir))
    except ValueError:  # no relative path between them (another drive): the absolute one is all there is
        rel = target_abs
    return {"path": Path(rel).as_posix(), "relative_to": RELATIVE_TO_ARTIFACT, "abs_path": target_abs}


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (after following symlinks); False for a device, FIFO, socket, directory, nothing."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def check_target(path: Path, what: str | None = None, expect: str = "dir", marker: str = MANIFEST, *,
                 param: str | None = None) -> Path:
    """`path` if it is what a reference expects: ``"file"`` a regular file, ``"dir"`` a directory whose `marker`
    (manifest.json) is a regular file. Anything else (a device, a FIFO, a bare directory) is a one-line error
    under `param` (the caller's parameter that gave `path`) or the description `what`."""
    path = Path(path)

    def refuse(message: str) -> TokenboundError:
        return TokenboundError(message, param=param) if param else TokenboundError(f"{what}: {message}")

    if expect == "file":
        if not is_regular_file(path):
            raise refuse(f"{path} is not a regular file")
    elif not (path.is_dir() and is_regular_file(path / marker)):
        raise refuse(f"{path} is not a directory holding a {marker}")
    return path


def resolve_recorded_path(ref: dict[str, Any] | str, referrer_dir: str | os.PathLike, what: str, *,
                          expect: str = "dir", marker: str = MANIFEST, sha256: str | None = None,
                          identify=None, flag: str | None = None) -> Path:
    """The path a reference written by ``path_record`` (or an older cwd-relative one) points to now.

    The relative path is resolved against `referrer_dir`; if nothing is there, the absolute hint is used only
    when ``identify(hint) == sha256``. The result must pass ``check_target(expect, marker)``. `flag` names the
    option that points at a moved target (e.g. ``--data``) in the error message.
    """
    if isinstance(ref, str):
        ref = {"path": ref}
    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str) or not ref["path"]:
        raise TokenboundError(f"{what}: the recorded reference {ref!r} has no path")
    recorded = Path(ref["path"])
    relative = ref.get("relative_to") == RELATIVE_TO_ARTIFACT
    primary = Path(referrer_dir) / recorded if relative else recorded
    if os.path.exists(primary):
        return check_target(primary, what, expect, marker)
    hint = ref.get("abs_path")
    if isinstance(hint, str) and hint and sha256 and identify is not None and os.path.exists(hint):
        candidate = check_target(Path(hint), what, expect, marker)
        try:
            same = identify(candidate) == sha256
        except TokenboundError:
            same = False
        if same:
            return candidate
    where = f" (recorded relative to {referrer_dir})" if relative else ""
    tail = f"; use {flag} to point at it" if flag else ""
    raise TokenboundError(f"{what}: {primary} not found{where}{tail}")


def file_inside(base_dir: str | os.PathLike, name: str, what: str) -> Path:
    """``base_dir/name`` if it lies inside `base_dir` (symlinks followed) and is a regular file when it exists.

    A name that leads out of the folder (absolute, ``..``, a symlink elsewhere) or to a device, FIFO or
    directory is a one-line error: an artifact's own files are read only from its own folder. A missing file
    is returned as is (the caller reports it).
    """
    if not isinstance(name, str) or not name:
        raise TokenboundError(f"{what}: the recorded file name {name!r} is not a relative path")
    base = Path(base_dir)
    path = base / name
    real, real_base = Path(os.path.realpath(path)), Path(os.path.realpath(base))
    if Path(name).is_absolute() or not real.is_relative_to(real_base) or real == real_base:
        raise TokenboundError(f"{what}: {name} is outside {base}; only files inside the artifact's own folder "
                              f"are read")
    if os.path.exists(path) and not is_regular_file(path):
        raise TokenboundError(f"{what}: {path} is not a regular file")
    return path


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike, target: str | os.PathLike,
                   param: str | None = None) -> Iterator[Path]:
    """Hold ``fcntl.flock`` on `lock_path` (created, holding our pid) for the block; removed on exit.

    The lock guards `target` (the path being written), given by the caller's parameter `param`. Non-blocking:
    if another process holds it, a one-line error names `param` and `target`, the lock file and that pid.
    The kernel releases the lock of a process that dies, so a stale file left by ``kill -9`` does not block.
    """
    import fcntl

    lock_path = Path(lock_path)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as e:
            raise path_error(f"cannot create the lock {lock_path} ({e.strerror})", target, param) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.read(fd, 32).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise path_error(f"another process (pid {pid or 'unknown'}) holds the lock {lock_path}; wait for it "
                             f"to finish or use another path", target, param) from None
        try:  # a holder that just finished unlinked the file we opened: lock the new one instead
            st = os.stat(lock_path)
            current = (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)
