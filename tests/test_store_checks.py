"""train, compress and bound check a store (hash, id range, index, vocabulary) before using it (docs/data.md)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tokenbound.artifacts import MANIFEST, write_json
from tokenbound.cli import main
from tokenbound.data.store import TokenStore, store_manifest, write_store
from tokenbound.errors import TokenboundError

VOCAB = 16


def _write(path, seed=0, num_docs=60, vocab=VOCAB):
    rng = np.random.default_rng(seed)
    docs = [np.append(rng.integers(1, vocab, size=int(rng.integers(8, 40))), 0) for _ in range(num_docs)]
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return write_store(path, np.concatenate(docs), offsets, vocab, 0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("checks")
    _write(d / "good")
    train(d / "good", d / "run", preset="tiny", steps=2, seed=0, progress=False)
    assert main(["compress", "--run", str(d / "run"), "--method", "quant:levels=5", "--out", str(d / "comp")]) == 0
    # a byte flipped in tokens.bin after the store was sealed
    shutil.copytree(d / "good", d / "flipped")
    raw = bytearray((d / "flipped" / "tokens.bin").read_bytes())
    raw[10] ^= 0x01
    (d / "flipped" / "tokens.bin").write_bytes(bytes(raw))
    # an id >= V in a store whose manifest hashes agree (sealed after the id was written)
    shutil.copytree(d / "good", d / "wide")
    ids = np.fromfile(d / "wide" / "tokens.bin", dtype=np.uint16)
    ids[5] = VOCAB
    ids.tofile(d / "wide" / "tokens.bin")
    man = TokenStore.open(d / "wide").manifest
    write_json(d / "wide" / MANIFEST, store_manifest(d / "wide", VOCAB, 0, man["num_tokens"], man["num_documents"],
                                                     num_bytes=None, tokenizer_spec=None, source={}))
    _write(d / "vocab20", vocab=20)   # a well-formed store in another vocabulary
    return d


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, err.strip().splitlines()


@pytest.mark.parametrize("verb", ["train", "compress", "bound"])
@pytest.mark.parametrize("store, needle", [("flipped", "tokens.bin: sha256 does not match"),
                                           ("wide", f"token id {VOCAB} is outside the store's vocabulary")])
def test_a_corrupt_store_is_refused_before_use(world, tmp_path, capsys, verb, store, needle):
    out = tmp_path / ("c.json" if verb == "bound" else "out")
    argv = {"train": ["train", "--data", world / store, "--out", out, "--preset", "tiny", "--steps", "1"],
            "compress": ["compress", "--run", world / "run", "--method", "quant:levels=5", "--data", world / store,
                         "--out", out],
            "bound": ["bound", "--compressed", world / "comp", "--data", world / store, "--out", out,
                      "--samples", "20"]}[verb]
    code, err = _cli(capsys, *argv)
    assert code == 2 and len(err) == 1, err
    assert "--data" in err[0] and str(world / store) in err[0] and needle in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing written


def test_a_store_in_another_vocabulary_is_refused(world, tmp_path, capsys):
    code, err = _cli(capsys, "compress", "--run", world / "run", "--method", "quant:levels=5", "--data",
                     world / "vocab20", "--out", tmp_path / "out")
    assert code == 2 and len(err) == 1 and "vocabulary has 20 ids but the model's has 16" in err[0]
    code, err = _cli(capsys, "bound", "--compressed", world / "comp", "--data", world / "vocab20", "--out",
                     tmp_path / "c.json", "--samples", "20")
    assert code == 2 and len(err) == 1 and "vocabulary" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_info_on_an_id_outside_the_vocabulary_is_one_line(world, capsys):
    code, err = _cli(capsys, "info", world / "wide")
    assert code == 2 and len(err) == 1 and f"token id {VOCAB} is outside" in err[0] and "Traceback" not in err[0]


def test_check_api(world, tmp_path):
    assert TokenStore.open(world / "good", check=True).num_tokens > 0
    assert set(TokenStore.open(world / "good").manifest["files_sha256"]) == {"tokens.bin", "doc_offsets.npy"}
    with pytest.raises(TokenboundError, match="^eval_data .*tokens.bin: sha256") as e:  # the caller's parameter
        TokenStore.open(world / "flipped", check=True, param="eval_data")
    assert e.value.cli_message().startswith(f"--eval-data {world / 'flipped' / 'tokens.bin'}: sha256")  # its flag
    with pytest.raises(TokenboundError, match="vocabulary has 16 ids but the model's has 20"):
        TokenStore.open(world / "good").check(vocab_size=20)
    # an index that does not start at 0, in a store whose hashes agree
    shutil.copytree(world / "good", tmp_path / "idx")
    off = np.load(tmp_path / "idx" / "doc_offsets.npy")
    np.save(tmp_path / "idx" / "doc_offsets.npy", off + 1)
    man = TokenStore.open(tmp_path / "idx").manifest
    write_json(tmp_path / "idx" / MANIFEST, store_manifest(tmp_path / "idx", VOCAB, 0, man["num_tokens"],
                                                           man["num_documents"], num_bytes=None,
                                                           tokenizer_spec=None, source={}))
    with pytest.raises(TokenboundError, match="doc_offsets.npy: not"):
        TokenStore.open(tmp_path / "idx", check=True)
    # a store written before files_sha256 was recorded is still checked through its combined sha256
    shutil.copytree(world / "flipped", tmp_path / "old")
    man = TokenStore.open(tmp_path / "old").manifest
    del man["files_sha256"]
    write_json(tmp_path / "old" / MANIFEST, man)
    with pytest.raises(TokenboundError, match="do not hash to the manifest's sha256"):
        TokenStore.open(tmp_path / "old", check=True)
