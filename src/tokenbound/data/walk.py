"""The files of a directory corpus (docs/data.md, "A source tree prepares as it is"): which files under a folder
match a pattern, in a fixed order (sorted relative paths, independent of the file system's listing order), and
which folders were not read.

Version-control and cache folders hold no documents. Hidden folders (.git, .hg, .svn, .mypy_cache, .pytest_cache,
.tox, .venv) are skipped by their dot; SKIPPED_DIRS have none. A folder holding pyvenv.cfg is a virtual
environment and is skipped too.
"""
from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from ..errors import TokenboundError

SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "__MACOSX", "CVS", "_darcs"})


def matching_files(root: Path, pattern: str, skipped_dirs: list[str] | None = None) -> list[Path]:
    """Files under `root` matching `pattern` (a pathlib glob), sorted by relative path, without hidden files and
    without those inside hidden, version-control, cache or virtual-environment folders; the outermost skipped
    folders that held a matching entry are appended to `skipped_dirs` (relative paths, sorted).

    A pattern ``**/NAME`` (NAME without a slash, e.g. the default ``**/*.py``) is listed by one scandir walk;
    any other pattern by ``Path.glob``. Both give the same files (pathlib's rules: ``**`` does not enter
    symbolic links to folders, names match case-sensitively)."""
    head, _, name = pattern.partition("/")
    if head == "**" and name and "/" not in name and "**" not in name:
        found, skipped = _walk(root, re.compile(fnmatch.translate(name)).fullmatch)
    else:
        found, skipped = _glob(root, pattern)
    if skipped_dirs is not None:
        skipped_dirs.extend(sorted(skipped))
    return [root / rel for rel in sorted(found)]


def _skips(path: str, name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS or os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _walk(root: Path, match) -> tuple[list[str], set[str]]:
    found: list[str] = []
    skipped: set[str] = set()
    # (folder, its relative path with a trailing slash, the outermost skipped folder it is in, or None)
    stack: list[tuple[str, str, str | None]] = [(str(root), "", None)]
    while stack:
        path, rel, cut = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:  # unreadable folder: as Path.glob, nothing below it
            continue
        for entry in entries:
            name = entry.name
            try:
                is_dir = entry.is_dir() and not entry.is_symlink()
            except OSError:
                is_dir = False
            if match(name) and not name.startswith("."):
                if cut is not None:
                    skipped.add(cut)
                elif _is_file(entry):
                    found.append(rel + name)
            if is_dir:
                sub = rel + name
                stack.append((entry.path, sub + "/", cut if cut is not None or not _skips(entry.path, name)
                              else sub))
    return found, skipped


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _glob(root: Path, pattern: str) -> tuple[list[str], set[str]]:
    venv: dict[Path, bool] = {}

    def is_venv(d: Path) -> bool:
        if d not in venv:
            venv[d] = (d / "pyvenv.cfg").is_file()
        return venv[d]

    found, skipped = [], set()
    try:
        for p in root.glob(pattern):
            parts = p.relative_to(root).parts
            if parts and parts[-1].startswith("."):
                continue
            cut = next((i for i, part in enumerate(parts[:-1]) if part.startswith(".") or part in SKIPPED_DIRS
                        or is_venv(root.joinpath(*parts[:i + 1]))), None)
            if cut is not None:
                skipped.add("/".join(parts[:cut + 1]))
                continue
            if p.is_file():
                found.append("/".join(parts))
    except (ValueError, NotImplementedError) as e:  # e.g. an absolute or malformed pattern
        raise TokenboundError(f"{e} (give a pattern relative to the corpus folder)",
                              param="glob", value=repr(pattern)) from None
    return found, skipped
