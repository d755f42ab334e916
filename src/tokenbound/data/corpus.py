"""Corpus readers (docs/design.md §5): stream documents from a spec without holding the corpus in memory.

Specs: ``stdlib`` / ``stdlib+tests`` / ``stdlib-tests`` (the interpreter's standard-library ``.py`` files without,
with, or only its test suites), ``python`` (every installed ``.py`` file, de-duplicated: data/installed.py), a text
file or a
directory of text files (``glob``), ``*.jsonl`` (``text_field``), ``*.parquet`` (``text_field``), and
``tokens:FILE.npy`` (pre-tokenized ids, documents separated by ``eot``).

Every reader yields `Document`s in a fixed order (sorted relative paths, file line/row order, array order),
each with an `identity` that does not depend on position in the stream (relative path, jsonl line number
(1-based), parquet row number (0-based), tokens: segment index (0-based)); the held-out split hashes it.
A reader never decides policy: a document it cannot read comes back with `problem` set and `prepare`
either raises or skips and counts it (``--skip-bad-files``).
"""
from __future__ import annotations

import abc

import codecs
import functools
import json
import os
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import TokenboundError
from .walk import matching_files

STDLIB_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
INSTALLED_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})
TOKENS_CHUNK = 1 << 22  # ids scanned per step of a tokens: corpus (bounded memory)


STREAM_FILE_BYTES = 1 << 25  # files larger than this are streamed, not read whole
STREAM_BLOCK_BYTES = 1 << 24

# Files that are not text: skipped (and counted) without being read. Any other file whose first BINARY_PROBE_BYTES
# hold a NUL byte is skipped as binary too; a file that looks like text but does not decode stays an error.
BINARY_SUFFIXES = frozenset({
    ".pyc", ".pyo", ".pyd", ".so", ".o", ".a", ".obj", ".lib", ".dll", ".dylib", ".exe", ".class", ".jar", ".wasm",
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".tif", ".tiff", ".webp", ".pdf", ".psd",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".whl", ".egg",
    ".npy", ".npz", ".pt", ".pth", ".ckpt", ".safetensors", ".pkl", ".pickle", ".parquet", ".h5", ".onnx",
    ".gguf", ".sqlite", ".sqlite3", ".db", ".woff", ".woff2", ".ttf", ".otf", ".eot",
    ".mp3", ".mp4", ".wav", ".flac", ".ogg", ".avi", ".mov", ".mkv"})
BINARY_PROBE_BYTES = 8192
SKIPPED_EXAMPLES = 10  # how many skipped paths the manifest lists (all are counted)


class DocumentProblem(Exception):
    """A streamed document turned out unreadable part-way; the message names the file."""


@dataclass
class Document:
    """One document. Exactly one of `text` (text corpora), `stream` (a huge text file: a function that
    yields its text in pieces, raising DocumentProblem if it is unreadable) and `ids` (tokens: corpora) is
    set, unless `problem` says why the document could not be read. `progress` is its share of
    `Corpus.progress_total`."""

    identity: str
    text: str | None = None
    ids: np.ndarray | None = None
    problem: str | None = None
    progress: int = 0
    stream: Callable[[], Iterator[str]] | None = None


class Corpus(abc.ABC):
    """Base class: `documents()` streams the corpus; `describe()` records what it was."""

    spec: str
    pretokenized = False
    progress_unit = "B"

    @property
    def progress_total(self) -> int | None:
        return None

    @abc.abstractmethod
    def documents(self) -> Iterator[Document]:
        """Yield the corpus's documents in their fixed order."""

    def describe(self) -> dict:
        return {"spec": self.spec}

    def location(self, identity: str) -> str:
        """Where document `identity` is read from on this machine (a resolved file path, with the line or row
        inside it where a file holds many documents): two corpora share a document's source iff they share its
        location."""
        path = getattr(self, "path", None)
        return f"{Path(path).resolve()}#{identity}" if path is not None else f"{self.spec}#{identity}"


def _text_document(identity: str, data: bytes, where: str) -> Document:
    try:
        return Document(identity, text=data.decode("utf-8"), progress=len(data))
    except UnicodeDecodeError as e:
        return Document(identity, problem=f"{where}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                        progress=len(data))


class TextFilesCorpus(Corpus):
    """A text file (one document) or the files of a directory matching `glob` (one document each,
    sorted by relative path). In a directory, hidden files and directories, version-control and cache folders
    (SKIPPED_DIRS, virtual environments) and binary files (BINARY_SUFFIXES, or a NUL byte in the first block)
    are skipped and counted in `describe()`."""

    def __init__(self, spec: str, root: Path, files: list[Path], description: dict,
                 skipped_dirs: list[str] | None = None, binary: dict[str, str] | None = None):
        self.spec, self.root, self.files, self._description = spec, root, files, description
        self._skipped_dirs = skipped_dirs  # None: a single file, nothing is skipped
        self._binary = binary if binary is not None else {}  # relative path -> why it is not text
        self._total = sum(f.stat().st_size for f in files)
        self._real_root: str | None = None

    @classmethod
    def from_path(cls, spec: str, path: Path, glob: str | None, exclude: Path | None = None) -> "TextFilesCorpus":
        if path.is_file():
            if glob is not None:
                raise TokenboundError(f"only applies to a directory corpus, {path} is a file", param="glob")
            return cls(spec, path.parent, [path], {"spec": spec, "kind": "text_file"})
        pattern = glob or "**/*"
        keep = None
        if exclude is not None:  # e.g. the output store of an earlier run inside the corpus directory
            exclude = exclude.resolve()
            keep = lambda f, parts: exclude not in f.resolve().parents  # noqa: E731
        corpus = cls.tree(spec, path, pattern, {"spec": spec, "kind": "text_directory", "glob": pattern}, keep)
        if not corpus.files:
            skipped = f" (skipped {len(corpus._binary)} binary files)" if corpus._binary else ""
            raise TokenboundError(f"no files match --glob {pattern!r}{skipped}", param="corpus", value=spec)
        return corpus

    @classmethod
    def stdlib(cls, spec: str, include_tests: bool, glob: str | None, only_tests: bool = False,
               root: Path | None = None) -> "TextFilesCorpus":
        """The standard library's files (`root`, by default the interpreter's): without the test suites
        (STDLIB_TEST_DIRS), with them, or (`only_tests`) only them; never the installed packages inside it."""
        root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
        pattern = glob or "**/*.py"
        description = {"spec": spec, "kind": "stdlib", "root": str(root), "glob": pattern,
                       "include_tests": include_tests or only_tests, "python": platform.python_version()}
        if only_tests:
            description["only_tests"] = True
        corpus = cls.tree(spec, root, pattern, description, stdlib_filter(include_tests, only_tests))
        if not corpus.files:
            raise TokenboundError(f"no standard-library files match --glob {pattern!r} in {root}",
                                  param="corpus", value=spec)
        return corpus

    @classmethod
    def tree(cls, spec: str, root: Path, pattern: str, description: dict,
             keep: Callable[[Path, tuple[str, ...]], bool] | None = None) -> "TextFilesCorpus":
        """The files under `root` matching `pattern` that `keep(path, relative parts)` accepts (all by default),
        binary suffixes set aside; possibly none."""
        skipped_dirs: list[str] = []
        files = [f for f in matching_files(root, pattern, skipped_dirs)
                 if keep is None or keep(f, f.relative_to(root).parts)]
        binary = {f.relative_to(root).as_posix(): f"suffix {f.suffix.lower()}" for f in files
                  if f.suffix.lower() in BINARY_SUFFIXES}
        files = [f for f in files if f.relative_to(root).as_posix() not in binary]
        return cls(spec, root, files, description, skipped_dirs=skipped_dirs, binary=binary)

    @property
    def progress_total(self) -> int:
        return self._total

    def location(self, identity: str) -> str:
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        return os.path.join(self._real_root, identity)

    def documents(self) -> Iterator[Document]:
        for f in self.files:
            rel = f.relative_to(self.root).as_posix()
            try:
                size = f.stat().st_size
                if size > STREAM_FILE_BYTES:
                    if self._skipped_dirs is not None and _probe_binary(f):
                        self._binary[rel] = "NUL byte"
                        continue
                    yield Document(rel, stream=functools.partial(_stream_text, f), progress=size)
                    continue
                data = f.read_bytes()
            except OSError as e:
                yield Document(rel, problem=f"{f}: cannot read ({e.strerror})")
                continue
            if self._skipped_dirs is not None and b"\0" in data[:BINARY_PROBE_BYTES]:
                self._binary[rel] = "NUL byte"  # not text: not a document (recorded, the same on every pass)
                continue
            yield _text_document(rel, data, str(f))

    def describe(self) -> dict:
        d = {**self._description, "num_files": len(self.files)}
        if self._skipped_dirs is not None:
            # Known after a pass over documents(): files found binary by their first block are added then.
            binary = sorted(self._binary)
            d.update(num_files=len(self.files) - sum(1 for f in binary if self._binary[f] == "NUL byte"),
                     skipped_binary_files=len(binary),
                     skipped_binary_examples=[f"{f} ({self._binary[f]})" for f in binary[:SKIPPED_EXAMPLES]],
                     skipped_directories=len(self._skipped_dirs),
                     skipped_directory_examples=self._skipped_dirs[:SKIPPED_EXAMPLES])
        return d


def stdlib_filter(include_tests: bool, only_tests: bool = False) -> Callable[[Path, tuple[str, ...]], bool]:
    """Which files of a standard-library folder (by their relative parts) a stdlib corpus reads: never installed
    packages; the test suites (folders named in STDLIB_TEST_DIRS) with `include_tests`, only them with
    `only_tests`."""
    def keep(f: Path, parts: tuple[str, ...]) -> bool:
        in_tests = bool(STDLIB_TEST_DIRS & set(parts[:-1]))
        return not INSTALLED_PACKAGE_DIRS & set(parts) and (in_tests if only_tests else include_tests or not in_tests)

    return keep


def _probe_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(BINARY_PROBE_BYTES)


def _stream_text(path: Path) -> Iterator[str]:
    """The UTF-8 text of `path` in pieces of about STREAM_BLOCK_BYTES (bounded memory)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(STREAM_BLOCK_BYTES):
                try:
                    yield decoder.decode(block)
                except UnicodeDecodeError as e:
                    raise DocumentProblem(f"{path}: not valid UTF-8 (near offset {offset + e.start})") from None
                offset += len(block)
            try:
                yield decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise DocumentProblem(f"{path}: not valid UTF-8 (truncated character at the end)") from None
    except OSError as e:
        raise DocumentProblem(f"{path}: cannot read ({e.strerror})") from None


class JsonlCorpus(Corpus):
    """One JSON object per line; the document is its `text_field` string. Blank lines are empty documents."""

    def __init__(self, spec: str, path: Path, text_field: str):
        self.spec, self.path, self.text_field = spec, path, text_field
        self._total = path.stat().st_size

    @property
    def progress_total(self) -> int:
        return self._total

    def documents(self) -> Iterator[Document]:
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                where = f"{self.path}:{lineno}"
                if not raw.strip():
                    yield Document(str(lineno), text="", progress=len(raw))
                    continue
                doc = _text_document(str(lineno), raw, where)
                if doc.problem is None:
                    doc.text, doc.problem = self._field(doc.text, where)
                yield doc

    def _field(self, line: str, where: str) -> tuple[str | None, str | None]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return None, f"{where}: not valid JSON ({e.msg})"
        if not isinstance(obj, dict) or self.text_field not in obj:
            return None, f"{where}: no {self.text_field!r} field (--text-field)"
        text = obj[self.text_field]
        if text is None:
            return "", None
        if not isinstance(text, str):
            return None, f"{where}: field {self.text_field!r} is a {type(text).__name__}, not a string"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None, f"{where}: field {self.text_field!r} holds a lone surrogate (not valid Unicode)"
        return text, None

    def describe(self) -> dict:
        return {"spec": self.spec, "kind": "jsonl", "text_field": self.text_field}


class ParquetCorpus(Corpus):
    """The string column `text_field` of a Parquet file, one document per row, read in record batches."""

    progress_unit = "doc"

    def __init__(self, spec: str, path: Path, text_field: str):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TokenboundError("reading Parquet needs pyarrow (pip install pyarrow)",
                                  param="corpus", value=spec) from None
        self.spec, self.path, self.text_field = spec, path, text_field
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise TokenboundError(f"not a Parquet file ({str(e).splitlines()[0]})",
                                  param="corpus", value=spec) from None
        schema = self._file.schema_arrow
        if text_field not in schema.names:
            raise TokenboundError(f"no column {text_field!r} (--text-field); has {schema.names}",
                                  param="corpus", value=spec)
        kind = schema.field(text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise TokenboundError(f"column {text_field!r} has type {kind}, expected string", param="corpus", value=spec)

    @property
    def progress_total(self) -> int:
        return self._file.metadata.num_rows

    def documents(self) -> Iterator[Document]:
        row = 0
        for batch in self._file.iter_batches(batch_size=1024, columns=[self.text_field]):
            for text in batch.column(0).to_pylist():
                yield Document(str(row), text=text or "", progress=1)  # null counts as an empty document
                row += 1

    def describe(self) -> dict:
        return {"spec": self.spec, "kind": "parquet", "text_field": self.text_field}


class TokensCorpus(Corpus):
    """A 1-D integer `.npy` of ids; documents are the segments between `eot` ids (a trailing segment
    without eot is a document too). Identity = segment index, empty segments included."""

    pretokenized = True
    progress_unit = "tok"

    def __init__(self, spec: str, path: Path, vocab_size: int | None, eot: int | None):
        self.spec, self.path = spec, path
        if vocab_size is None:
            raise TokenboundError(f"required for a tokens: corpus ({spec})", param="vocab_size")
        if eot is None:
            raise TokenboundError(f"required for a tokens: corpus ({spec})", param="eot")
        if vocab_size < 2 or vocab_size >= 2 ** 32:
            raise TokenboundError(f"must be in [2, 2^32), got {vocab_size}", param="vocab_size")
        if not 0 <= eot < vocab_size:
            raise TokenboundError(f"{eot} is outside the vocabulary [0, {vocab_size})", param="eot")
        self.vocab_size, self.eot = int(vocab_size), int(eot)
        try:
            self.ids = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            why = "not in .npy format" if "pickle" in str(e) else str(e).splitlines()[0]  # numpy: "pickled"
            raise TokenboundError(f"{path}: not a readable .npy array ({why})") from None
        if self.ids.dtype.kind not in "iu":
            raise TokenboundError(f"{path}: ids must be an integer array, got dtype {self.ids.dtype}")
        if self.ids.ndim != 1:
            raise TokenboundError(f"{path}: ids must be a 1-D array, got shape {self.ids.shape}")
        self._check_range()

    def _check_range(self) -> None:
        for start in range(0, self.ids.shape[0], TOKENS_CHUNK):
            chunk = np.asarray(self.ids[start:start + TOKENS_CHUNK])
            bad = np.flatnonzero((chunk < 0) | (chunk >= self.vocab_size))
            if bad.size:
                i = int(bad[0])
                raise TokenboundError(f"{self.path}: id {int(chunk[i])} at position {start + i} is outside the "
                                      f"vocabulary [0, {self.vocab_size}) (--vocab-size)")

    @property
    def progress_total(self) -> int:
        return int(self.ids.shape[0])

    def documents(self) -> Iterator[Document]:
        index, pending = 0, []  # pending: pieces of the segment that crosses chunk boundaries
        for start in range(0, self.ids.shape[0], TOKENS_CHUNK):
            chunk = np.asarray(self.ids[start:start + TOKENS_CHUNK]).astype(np.int64)
            cut = 0
            for e in np.flatnonzero(chunk == self.eot):
                pending.append(chunk[cut:e])
                ids = np.concatenate(pending)
                yield Document(str(index), ids=ids, progress=ids.size + 1)
                index, pending, cut = index + 1, [], int(e) + 1
            pending.append(chunk[cut:])
        if pending and sum(p.size for p in pending):
            ids = np.concatenate(pending)
            yield Document(str(index), ids=ids, progress=ids.size)

    def describe(self) -> dict:
        return {"spec": self.spec, "kind": "tokens", "vocab_size": self.vocab_size, "eot": self.eot}


def open_corpus(spec: str, *, glob: str | None = None, text_field: str = "text", vocab_size: int | None = None,
                eot: int | None = None, include_tests: bool = False, exclude: Path | None = None) -> Corpus:
    """Parse a corpus spec and open it (checks that it exists and is non-empty where that is cheap).
    Files under `exclude` (the output directory) are never part of a directory corpus."""
    if spec in ("stdlib", "stdlib+tests"):
        return TextFilesCorpus.stdlib(spec, include_tests or spec == "stdlib+tests", glob)
    if spec == "stdlib-tests":
        return TextFilesCorpus.stdlib(spec, True, glob, only_tests=True)
    if spec == "python":
        from . import installed

        return installed.PythonCorpus(spec, installed.python_roots(), glob)
    if spec.startswith("tokens:"):
        path = Path(spec[len("tokens:"):])
        if not path.is_file():
            raise TokenboundError("no such file", param="corpus", value=spec)
        return TokensCorpus(spec, path, vocab_size, eot)
    path = Path(spec)
    if not path.exists():
        raise TokenboundError("no such file or directory", param="corpus", value=spec)
    if path.is_file() and path.stat().st_size == 0:
        raise TokenboundError("empty file", param="corpus", value=spec)
    if path.is_file() and path.suffix == ".jsonl":
        return JsonlCorpus(spec, path, text_field)
    if path.is_file() and path.suffix == ".parquet":
        return ParquetCorpus(spec, path, text_field)
    return TextFilesCorpus.from_path(spec, path, glob, exclude)
