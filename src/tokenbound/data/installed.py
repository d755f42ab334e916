"""The ``python`` corpus (docs/data.md): every Python source installed for this interpreter.

Roots, in this order: the standard library (with its test suites, without the installed packages inside its
folder), then every ``site-packages``/``dist-packages`` folder among the ``sysconfig`` paths ``purelib`` and
``platlib`` and ``sys.path``, in that order, each once. Each root's ``.py`` files are read in sorted relative
path order (as a directory corpus: docs/data.md, "A source tree prepares as it is"). A file whose content
(sha256 of its bytes) was already read is a duplicate and not a document: the first file in this order keeps it.

A document's identity is ``ROOT/RELATIVE_PATH`` with ROOT the root's id (``stdlib``, ``site-packages``,
``dist-packages``; a second folder of the same name is ``site-packages-2``, ...). Every document read is listed,
in corpus order, in the store's ``corpus_files.jsonl`` (root, path, sha256, bytes), whose sha256 and totals the
manifest's ``source.file_list`` records: the list and the roots say exactly which files the store holds.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import sysconfig
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from ..errors import TokenboundError
from .corpus import INSTALLED_PACKAGE_DIRS, SKIPPED_EXAMPLES, Corpus, Document, TextFilesCorpus, stdlib_filter

FILE_LIST = "corpus_files.jsonl"
UNREADABLE_SHA256 = "unreadable"  # a file that could not be read has no content hash


@dataclass(frozen=True)
class SourceRoot:
    """One folder of the corpus: `id` names it in identities; `stdlib` roots leave out installed packages."""

    id: str
    path: Path
    stdlib: bool = False


@dataclass(frozen=True)
class CorpusFile:
    """One document of a file corpus, as listed in corpus_files.jsonl."""

    root: str
    path: str
    sha256: str
    bytes: int


def python_roots() -> list[SourceRoot]:
    """The roots of the ``python`` corpus on this interpreter (module docstring)."""
    paths = sysconfig.get_paths()
    roots = [SourceRoot("stdlib", Path(paths["stdlib"]), stdlib=True)]
    seen = {os.path.realpath(paths["stdlib"])}
    for candidate in [paths["purelib"], paths["platlib"], *sys.path]:
        if not candidate or os.path.basename(os.path.normpath(candidate)) not in INSTALLED_PACKAGE_DIRS:
            continue
        real = os.path.realpath(candidate)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        name = os.path.basename(os.path.normpath(candidate))
        count = sum(1 for r in roots if r.id == name or r.id.startswith(f"{name}-"))
        roots.append(SourceRoot(name if count == 0 else f"{name}-{count + 1}", Path(candidate)))
    return roots


class PythonCorpus(Corpus):
    """The ``.py`` files (`glob`, default ``**/*.py``) of `roots`, de-duplicated by content (module docstring)."""

    def __init__(self, spec: str, roots: list[SourceRoot], glob: str | None = None):
        ids = [r.id for r in roots]
        if not roots or len(set(ids)) != len(ids) or any(not i or "/" in i for i in ids):
            raise ValueError(f"roots need distinct ids without '/': {ids}")
        self.spec, self.roots, self.glob = spec, roots, glob or "**/*.py"
        self._parts = [
            TextFilesCorpus.tree(spec, r.path, self.glob, {}, stdlib_filter(True) if r.stdlib else None)
            for r in roots]
        if not any(p.files for p in self._parts):
            raise TokenboundError(f"no files match --glob {self.glob!r} in "
                                  f"{', '.join(str(r.path) for r in roots)}", param="corpus", value=spec)
        self.files: list[CorpusFile] = []
        self.duplicate_files = 0
        self.duplicate_bytes = 0

    @property
    def progress_total(self) -> int:
        return sum(p.progress_total for p in self._parts)

    def location(self, identity: str) -> str:
        root, _, rel = identity.partition("/")
        return self._parts[[r.id for r in self.roots].index(root)].location(rel)

    def documents(self) -> Iterator[Document]:
        self.files, self.duplicate_files, self.duplicate_bytes = [], 0, 0
        seen: set[str] = set()
        for root, part in zip(self.roots, self._parts):
            for doc in part.documents():
                sha, size = _content_hash(part.root / doc.identity, doc)
                if sha in seen:
                    self.duplicate_files += 1
                    self.duplicate_bytes += size
                    continue
                if sha != UNREADABLE_SHA256:
                    seen.add(sha)
                self.files.append(CorpusFile(root.id, doc.identity, sha, size))
                yield replace(doc, identity=f"{root.id}/{doc.identity}")

    def describe(self) -> dict:
        d = {"spec": self.spec, "kind": "python", "glob": self.glob, "python": platform.python_version(),
             "roots": [{"id": r.id, "path": str(r.path)} for r in self.roots],
             "num_files": len(self.files), "duplicate_files": self.duplicate_files,
             "duplicate_bytes": self.duplicate_bytes}
        for key in ("skipped_binary", "skipped_directory"):
            examples = [f"{r.id}/{e}" for r, p in zip(self.roots, self._parts)
                        for e in p.describe()[f"{key}_examples"]]
            count = "skipped_binary_files" if key == "skipped_binary" else "skipped_directories"
            d[count] = sum(p.describe()[count] for p in self._parts)
            d[f"{key}_examples"] = examples[:SKIPPED_EXAMPLES]
        return d


def _content_hash(path: Path, doc: Document) -> tuple[str, int]:
    """(sha256 of the file's bytes, its size) for a document of a file corpus."""
    if doc.text is not None:
        data = doc.text.encode("utf-8")  # the file's bytes exactly: they decoded as UTF-8
        return hashlib.sha256(data).hexdigest(), len(data)
    sha, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                sha.update(block)
                size += len(block)
    except OSError:
        return UNREADABLE_SHA256, 0
    return sha.hexdigest(), size


def file_list_bytes(files: list[CorpusFile]) -> bytes:
    """corpus_files.jsonl: one JSON object per document, in corpus order."""
    return "".join(json.dumps(asdict(f), ensure_ascii=False, separators=(",", ":")) + "\n"
                   for f in files).encode("utf-8")


def write_file_list(directory: Path, files: list[CorpusFile]) -> dict:
    """Write corpus_files.jsonl into `directory`; the manifest's record of it."""
    data = file_list_bytes(files)
    (directory / FILE_LIST).write_bytes(data)
    return {"file": FILE_LIST, "sha256": hashlib.sha256(data).hexdigest(), "files": len(files),
            "bytes": sum(f.bytes for f in files)}


def read_file_list(path: Path) -> list[CorpusFile]:
    """The documents listed in a corpus_files.jsonl."""
    try:
        return [CorpusFile(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError, TypeError) as e:
        raise TokenboundError(f"{path}: not a readable corpus file list ({e})") from None


__all__ = ["python_roots", "PythonCorpus", "SourceRoot", "CorpusFile", "FILE_LIST", "write_file_list",
           "read_file_list"]
