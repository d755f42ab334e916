"""Reference compressors beside certified rates (evaluate/compressors.py): gzip -9 and xz -9e on the very text
of the certified store, recorded in the certificate and printed in its summary."""
from __future__ import annotations

import gzip
import lzma

import numpy as np
import pytest

from tokenbound.cli import main as cli_main
from tokenbound.data.prepare import prepare
from tokenbound.data.store import write_store
from tokenbound.evaluate.bound import bound, summary_lines
from tokenbound.evaluate.compressors import compressor_rates, store_text


@pytest.fixture(scope="module")
def text_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    corpus = root / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    words = ["def", "return", "self", "value", "import", "class", "for", "in", "é", "→"]
    texts = []
    for j in range(12):
        text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(20)) + "\n"
        (corpus / f"f{j:02d}.txt").write_text(text, encoding="utf-8")
        texts.append(text)
    store, _ = prepare(str(corpus), "byte", root / "store", glob="*.txt")
    return root, store, texts


def test_rates_are_the_compressors_on_the_decoded_documents(text_store):
    _, store, texts = text_store
    data = store_text(store)
    assert sorted(data.split(b"\x00")) == sorted(t.encode() for t in texts)  # every document, exactly once
    rates = compressor_rates(store)
    num_bytes = sum(len(t.encode()) for t in texts)
    assert rates.num_bytes == num_bytes == store.num_bytes
    assert rates.gzip_bits_per_byte == 8 * len(gzip.compress(data, 9, mtime=0)) / num_bytes
    assert rates.xz_bits_per_byte == 8 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / num_bytes
    assert 0 < rates.xz_bits_per_byte < 8 and 0 < rates.gzip_bits_per_byte < 8


def test_store_without_a_tokenizer_has_no_rates(tmp_path):
    toks = np.array([1, 2, 0, 3, 0])
    store = write_store(tmp_path / "s", toks, np.array([0, 3]), 4, 0)
    assert store_text(store) is None and compressor_rates(store) is None


def test_certificate_records_and_prints_the_rates(text_store):
    root, store, _ = text_store
    assert cli_main(["markov", "--data", str(root / "store"), "--order", "1", "--out", str(root / "m")]) == 0
    cert = bound(root / "m", root / "store", root / "c.json", samples=200, progress=False)
    ref = cert.extra["reference_compressors"]
    assert ref["gzip_bits_per_byte"] == compressor_rates(store).gzip_bits_per_byte
    line = next(x for x in summary_lines(cert) if x.strip().startswith("bits per byte"))
    assert "gzip -9" in line and "xz -9e" in line
