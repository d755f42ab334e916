"""Python source as study data: the pretraining store of the text studies and the stdlib files they read.

`code_store(study)` is the TokenStore a text study pretrains on: ``--data`` if given (it must record its
tokenizer, so that new text can be tokenized like it), at tiny scale a byte-level store of a few standard-library
files (prepared into OUT/data, seconds), otherwise the stdlib BPE-8192 store of `common.text_store`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import TokenboundError
from .common import Study, done, text_store

TINY_GLOB = "email/*.py"   # 20 files, 0.36 MB: the tiny scale's pretraining text (byte tokenizer)
TINY_VAL_FRACTION = 0.25   # enough held-out files for the downstream task at tiny scale


@dataclass(frozen=True)
class SourceFile:
    """A standard-library file a study read: its path relative to the stdlib root and the sha256 of its bytes."""

    path: str
    sha256: str
    text: str


def code_store(study: Study) -> Path:
    """The pretraining store of a text study (see the module docstring); it always has a tokenizer."""
    from ..data.store import TokenStore

    if study.scale == "tiny" and study.data is None:
        from ..data.prepare import prepare

        target = study.path("data")
        study.stage("prepare stdlib (byte)", target, lambda: prepare(
            "stdlib", "byte", target, val_fraction=TINY_VAL_FRACTION, seed=study.seed, glob=TINY_GLOB))
        path = target
    else:
        path = text_store(study)
    if TokenStore.open(path).tokenizer is None:
        raise TokenboundError("the store records no tokenizer; this study tokenizes new text like "
                              "the store (prepare it with tokenbound prepare --tokenizer ...)",
                              param="data", value=path)
    return path


def stdlib_files(glob: str) -> list[SourceFile]:
    """The standard-library files matching `glob` (the stdlib corpus's own selection, sorted), decodable ones."""
    from ..data.corpus import TextFilesCorpus

    corpus = TextFilesCorpus.stdlib("stdlib", False, glob)
    out = []
    for f in corpus.files:
        data = f.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.append(SourceFile(f.relative_to(corpus.root).as_posix(), hashlib.sha256(data).hexdigest(), text))
    return out


def store_ready(path: Path) -> bool:
    return done(path) and done(path / "val")
