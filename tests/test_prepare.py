import json
import subprocess
import sys

import numpy as np
import pytest

from tokenbound import TokenStore
from tokenbound.cli import main
from tokenbound.data.info import store_info
from tokenbound.data.prepare import prepare
from tokenbound.data.split import is_held_out
from tokenbound.errors import TokenboundError

TEXTS = {
    "a.py": "def f(x):\n    return x + 1\n",
    "b.txt": "Grüße — naïve café 😀\n\tend",
    "sub/c.txt": "literal <|endoftext|> stays text\n" * 3,
    "sub/d.txt": "import os\nprint(os.getcwd())\n" * 4,
    "e.txt": "x",
    "f.txt": "",  # empty: skipped and counted
}


def write_corpus(root, texts=TEXTS):
    for rel, text in texts.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


def texts_of(store):
    return [store.decode(store.document(j)) for j in range(store.num_documents)]


def fit_all(tokenizer):
    """prepare keywords that keep every document in the stores: a BPE fitted on the training documents."""
    return {"tokenizer_fit": "train-charged"} if tokenizer.startswith("bpe:") else {}


def check_layout(store):
    """Every document non-empty and ended by eot, offsets consistent, manifest counts right."""
    toks = np.asarray(store.tokens)
    assert store.doc_offsets[0] == 0 and (np.diff(store.doc_offsets) >= 2).all()
    ends = np.append(store.doc_offsets[1:], store.num_tokens) - 1
    assert (toks[ends] == store.eot).all() and (toks == store.eot).sum() == store.num_documents


@pytest.mark.parametrize("tokenizer", ["byte", "bpe:300"])
def test_decode_gives_back_each_document_exactly(corpus, tmp_path, tokenizer):
    train, val = prepare(str(corpus), tokenizer, tmp_path / "out", **fit_all(tokenizer))
    assert val is None and not (tmp_path / "out" / "val").exists()
    check_layout(train)
    nonempty = sorted(k for k, v in TEXTS.items() if v)
    assert texts_of(train) == [TEXTS[k] for k in nonempty]
    src = train.manifest["source"]
    assert src["skipped_empty_documents"] == 1 and src["documents"] == len(TEXTS)
    assert train.num_bytes == sum(len(v.encode()) for v in TEXTS.values())
    assert train.manifest["tokenizer"] == tokenizer and (train.path / "tokenizer.json").exists()
    assert train.vocab_size == (257 if tokenizer == "byte" else 300) and train.tokens.dtype == np.uint16
    if tokenizer == "byte":
        assert np.array_equal(train.document(1)[:-1], np.frombuffer(TEXTS["b.txt"].encode(), np.uint8))
    else:
        assert train.manifest["roundtrip_mismatched_documents"] == 0


def test_val_split_whole_documents_by_identity(corpus, tmp_path):
    f = 0.5
    train, val = prepare(str(corpus), "byte", tmp_path / "out", val_fraction=f, seed=3)
    nonempty = sorted(k for k, v in TEXTS.items() if v)
    expect_val = [k for k in nonempty if is_held_out(3, k, f)]
    assert expect_val and len(expect_val) < len(nonempty)  # this seed splits the corpus both ways
    assert texts_of(val) == [TEXTS[k] for k in expect_val]
    assert texts_of(train) == [TEXTS[k] for k in nonempty if k not in expect_val]
    check_layout(val)
    assert val.manifest["split"]["part"] == "val" and train.manifest["split"]["part"] == "train"
    assert train.num_bytes + val.num_bytes == sum(len(v.encode()) for v in TEXTS.values())
    # Identity, not position: adding documents does not move the old ones between train and val.
    write_corpus(corpus, {f"new{i}.txt": f"doc {i}" for i in range(10)})
    _, val2 = prepare(str(corpus), "byte", tmp_path / "out2", val_fraction=f, seed=3)
    assert set(TEXTS[k] for k in expect_val) <= set(texts_of(val2))
    assert not set(TEXTS[k] for k in nonempty if k not in expect_val) & set(texts_of(val2))


def test_bpe_train_charged_is_trained_on_training_documents_only(tmp_path):
    seed, f = 0, 0.5
    names = [f"d{i}.txt" for i in range(40)]
    secret = next(n for n in names if is_held_out(seed, n, f))
    texts = {n: f"ordinary words number {i}\n" for i, n in enumerate(names)}
    texts[secret] = "qzxv" * 500  # would become merges if the trainer saw it
    root = write_corpus(tmp_path / "c", texts)
    train, val = prepare(str(root), "bpe:400", tmp_path / "out", val_fraction=f, seed=seed,
                         tokenizer_fit="train-charged")
    vocab = json.loads((train.path / "tokenizer.json").read_text())["model"]["vocab"]
    assert not any("qzxv" in t for t in vocab) and any("ordinary" in t or "words" in t for t in vocab)
    assert "qzxv" * 500 in texts_of(val)  # but it still round-trips exactly
    assert train.manifest["bpe"]["train_documents"] == train.num_documents
    assert (val.path / "tokenizer.json").read_text() == (train.path / "tokenizer.json").read_text()


def test_bpe_is_fitted_on_the_tokenizer_split_only(tmp_path):
    import hashlib

    from tokenbound.data.split import in_tokenizer_split

    seed, f, ft = 0, 0.3, 0.2
    names = [f"d{i:02d}.txt" for i in range(60)]
    part = {n: "val" if is_held_out(seed, n, f) else "tokenizer" if in_tokenizer_split(seed, n, f, ft) else "train"
            for n in names}
    assert set(part.values()) == {"val", "tokenizer", "train"}
    texts = {n: f"ordinary words number {i}\n" for i, n in enumerate(names)}
    marker = {"val": "qzxv", "train": "wkjp", "tokenizer": "ymbr"}
    for p_ in marker:  # one document of each part repeats a string that would become merges if fitted on
        texts[next(n for n in names if part[n] == p_)] = marker[p_] * 500
    root = write_corpus(tmp_path / "c", texts)
    train, val = prepare(str(root), "bpe:400", tmp_path / "out", val_fraction=f, seed=seed, tokenizer_fraction=ft)
    vocab = json.loads((train.path / "tokenizer.json").read_text())["model"]["vocab"]
    assert any("ymbr" in t for t in vocab)
    assert not any("qzxv" in t or "wkjp" in t for t in vocab)
    stored_train, stored_val = texts_of(train), texts_of(val)
    split = [n for n in names if part[n] == "tokenizer"]
    assert stored_train == [texts[n] for n in names if part[n] == "train"]
    assert stored_val == [texts[n] for n in names if part[n] == "val"]
    fit = train.manifest["tokenizer_fit"]
    assert fit["mode"] == "tokenizer-split" and fit["fraction"] == ft and fit["documents"] == len(split)
    assert fit["identities_sha256"] == hashlib.sha256("".join(f"{n}\n" for n in split).encode()).hexdigest()
    assert fit["bytes"] == sum(len(texts[n].encode()) for n in split) and fit["fallback_identity"] is None
    assert val.manifest["tokenizer_fit"] == fit and train.manifest["bpe"]["train_documents"] == len(split)
    again, _ = prepare(str(root), "bpe:400", tmp_path / "again", val_fraction=f, seed=seed, tokenizer_fraction=ft)
    assert again.sha256 == train.sha256 and again.manifest["tokenizer_fit"] == fit  # deterministic


def test_tokenizer_split_falls_back_to_one_document(corpus, tmp_path):
    from tokenbound.data.split import tokenizer_score

    train, _ = prepare(str(corpus), "bpe:300", tmp_path / "out", tokenizer_fraction=1e-9)
    nonempty = sorted(k for k, v in TEXTS.items() if v)
    first = min(nonempty, key=lambda k: tokenizer_score(0, k))
    fit = train.manifest["tokenizer_fit"]
    assert fit["documents"] == 1 and fit["fallback_identity"] == first
    assert texts_of(train) == [TEXTS[k] for k in nonempty if k != first]


def test_train_charged_records_the_code_length(corpus, tmp_path):
    from tokenbound.data.tokenizers import bpe_code_length

    train, _ = prepare(str(corpus), "bpe:300", tmp_path / "out", tokenizer_fit="train-charged")
    fit = train.manifest["tokenizer_fit"]
    code = bpe_code_length(train.tokenizer)
    assert fit["mode"] == "train-charged" and fit["code_bits"] == code["bits"] > 0 and fit["merges"] == code["merges"]
    byte, _ = prepare(str(corpus), "byte", tmp_path / "byte")
    assert byte.manifest["tokenizer_fit"] == {"mode": "fixed"}


def test_bpe_training_cap_is_recorded(corpus, tmp_path):
    train, _ = prepare(str(corpus), "bpe:300", tmp_path / "out", bpe_train_max_bytes=40, tokenizer_fit="train-charged")
    bpe = train.manifest["bpe"]
    assert bpe["capped"] and bpe["train_bytes"] <= 40 and bpe["train_documents"] < train.num_documents
    assert texts_of(train)[3] == TEXTS["sub/c.txt"]


def test_prepare_is_deterministic(corpus, tmp_path):
    a, _ = prepare(str(corpus), "bpe:300", tmp_path / "a", val_fraction=0.3)
    b, _ = prepare(str(corpus), "bpe:300", tmp_path / "b", val_fraction=0.3)
    assert a.sha256 == b.sha256 and a.manifest["source"]["sha256"] == b.manifest["source"]["sha256"]


def test_skip_bad_files_counts_them(corpus, tmp_path):
    (corpus / "bad.txt").write_bytes(b"ok then \xc3\x28 broken")
    with pytest.raises(TokenboundError, match="bad.txt: not valid UTF-8.*--skip-bad-files"):
        prepare(str(corpus), "byte", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    train, _ = prepare(str(corpus), "bpe:300", tmp_path / "out", skip_bad_files=True, tokenizer_fit="train-charged")
    src = train.manifest["source"]
    assert src["skipped_bad_documents"] == 1 and "bad.txt" in src["bad_document_examples"][0]
    assert train.num_documents == 5


def test_jsonl_and_parquet_corpora(tmp_path):
    rows = ["first row", "", "second — row", "third\n"]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": r}) + "\n" for r in rows))
    train, _ = prepare(str(tmp_path / "c.jsonl"), "byte", tmp_path / "j", text_field="body")
    assert texts_of(train) == [r for r in rows if r] and train.manifest["source"]["kind"] == "jsonl"
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": rows}), tmp_path / "c.parquet")
    train, _ = prepare(str(tmp_path / "c.parquet"), "bpe:270", tmp_path / "p", tokenizer_fit="train-charged")
    assert texts_of(train) == [r for r in rows if r]


def test_tokens_corpus(tmp_path):
    ids = np.array([3, 4, 0, 0, 5, 0, 6, 7], dtype=np.int64)  # documents [3 4] [] [5] [6 7]
    np.save(tmp_path / "ids.npy", ids)
    train, val = prepare(f"tokens:{tmp_path}/ids.npy", None, tmp_path / "out", vocab_size=8, eot=0)
    assert np.asarray(train.tokens).tolist() == [3, 4, 0, 5, 0, 6, 7, 0]
    assert train.doc_offsets.tolist() == [0, 3, 5] and train.num_bytes is None
    assert train.manifest["tokenizer"] is None and train.tokenizer is None
    assert train.manifest["source"]["skipped_empty_documents"] == 1
    with pytest.raises(TokenboundError, match="no tokenizer"):
        train.decode([3])
    big = np.array([70000, 1, 2, 70000], dtype=np.uint32)
    np.save(tmp_path / "big.npy", big)
    wide, _ = prepare(f"tokens:{tmp_path}/big.npy", None, tmp_path / "wide", vocab_size=70001, eot=2)
    assert wide.tokens.dtype == np.uint32 and np.asarray(wide.tokens).tolist() == [70000, 1, 2, 70000, 2]


def test_stdlib_slice_with_bpe(tmp_path):
    train, val = prepare("stdlib", "bpe:600", tmp_path / "s", glob="json/*.py", val_fraction=0.2)
    root = train.manifest["source"]["root"]
    from pathlib import Path

    files = sorted(p for p in Path(root, "json").glob("*.py") if p.stat().st_size)
    texts = [p.read_text(encoding="utf-8") for p in files]
    fit = train.manifest["tokenizer_fit"]
    assert fit["mode"] == "tokenizer-split" and fit["documents"] >= 1
    assert len(texts_of(train) + texts_of(val)) + fit["documents"] == len(texts)
    assert set(texts_of(train) + texts_of(val)) <= set(texts)
    assert train.mean_bytes_per_token > 2.0  # BPE merges actually compress


def test_info_matches_the_stream(corpus, tmp_path):
    train, _ = prepare(str(corpus), "byte", tmp_path / "out", val_fraction=0.5, seed=3)
    info = store_info(tmp_path / "out", top=3)
    toks = np.asarray(train.tokens)
    counts = np.bincount(toks, minlength=257)
    assert info["tokens"] == toks.size and info["documents"] == train.num_documents
    assert info["mean_document_tokens"] == pytest.approx(toks.size / train.num_documents)
    assert info["distinct_tokens"] == int((counts > 0).sum())
    top = info["most_frequent"]
    assert [t["count"] for t in top] == sorted(counts, reverse=True)[:3]
    assert all(counts[t["id"]] == t["count"] for t in top)
    assert info["val"]["tokens"] == train.val.num_tokens and info["sha256"] == train.sha256


# -- command line ----------------------------------------------------------------------------------------

def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prepare_and_info(corpus, tmp_path, capsys):
    code, out, _ = cli(capsys, "prepare", "--corpus", str(corpus), "--tokenizer", "bpe:300", "--out",
                       str(tmp_path / "o"), "--val-fraction", "0.5", "--seed", "3")
    assert code == 0 and "tokens" in out and "held out" in out and "bytes/token" in out
    code, out, _ = cli(capsys, "info", str(tmp_path / "o"))
    assert code == 0 and "most frequent" in out and "val/" in out
    code, out, _ = cli(capsys, "info", str(tmp_path / "o"), "--json")
    assert json.loads(out)["tokens"] == TokenStore.open(tmp_path / "o").num_tokens


def bad_inputs(tmp_path, corpus):
    np.save(tmp_path / "big_ids.npy", np.array([1, 9]))
    np.save(tmp_path / "float_ids.npy", np.array([1.0]))
    (tmp_path / "emptydocs").mkdir()
    (tmp_path / "emptydocs" / "a.txt").write_text("")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.bin").write_bytes(b"\x80\x81")
    (tmp_path / "exists").mkdir()
    (tmp_path / "empty.txt").write_text("")
    c = str(corpus)
    return [
        (["--corpus", str(tmp_path / "missing"), "--tokenizer", "byte"], "no such file"),
        (["--corpus", str(tmp_path / "empty.txt"), "--tokenizer", "byte"], "empty file"),
        (["--corpus", str(tmp_path / "emptydocs"), "--tokenizer", "byte"], "no non-empty documents"),
        (["--corpus", str(tmp_path / "emptydocs"), "--tokenizer", "bpe:300"], "no non-empty training documents"),
        (["--corpus", c, "--glob", "*.rst", "--tokenizer", "byte"], "no files match"),
        (["--corpus", str(tmp_path / "bin"), "--tokenizer", "byte"], "not valid UTF-8"),
        (["--corpus", f"tokens:{tmp_path}/big_ids.npy", "--vocab-size", "5", "--eot", "0"], "id 9 at position 1"),
        (["--corpus", f"tokens:{tmp_path}/big_ids.npy", "--vocab-size", "10", "--eot", "10"], "--eot: 10"),
        (["--corpus", f"tokens:{tmp_path}/float_ids.npy", "--vocab-size", "5", "--eot", "0"], "integer array"),
        (["--corpus", f"tokens:{tmp_path}/big_ids.npy", "--vocab-size", "10", "--eot", "0", "--tokenizer",
          "byte"], "already tokenized"),
        (["--corpus", c], "--tokenizer: required"),
        (["--corpus", c, "--tokenizer", "bpe:256"], ">= 257"),
        (["--corpus", c, "--tokenizer", f"bpe:{2**32}"], "<= 2\\^20"),
        (["--corpus", c, "--tokenizer", "bpe:100000000"], "<= 2\\^20"),
        (["--corpus", c, "--tokenizer", "byte", "--eot", "3"], "--eot"),
        (["--corpus", c, "--tokenizer", "byte", "--val-fraction", "1"], "--val-fraction"),
        (["--corpus", c, "--tokenizer", "byte", "--val-fraction", "-0.1"], "--val-fraction"),
        (["--corpus", c, "--tokenizer", "byte", "--out", str(tmp_path / "exists")], "already exists"),
        (["--corpus", c, "--tokenizer", "byte", "--tokenizer-fraction", "0.1"], "--tokenizer-fraction: only for bpe"),
        (["--corpus", c, "--tokenizer", "byte", "--tokenizer-fit", "train-charged"], "--tokenizer-fit: only for bpe"),
        (["--corpus", c, "--tokenizer", "bpe:300", "--tokenizer-fraction", "0"], "--tokenizer-fraction: must be"),
        (["--corpus", c, "--tokenizer", "bpe:300", "--tokenizer-fit", "train-charged", "--tokenizer-fraction",
          "0.1"], "--tokenizer-fraction: only with"),
        (["--corpus", str(corpus / "a.py"), "--tokenizer", "bpe:300"], "train-charged"),
    ]


def test_cli_bad_inputs_one_line_exit_2_nothing_written(corpus, tmp_path, capsys):
    for argv, msg in bad_inputs(tmp_path, corpus):
        before = sorted(p.name for p in tmp_path.iterdir())
        if "--out" not in argv:
            argv = argv + ["--out", str(tmp_path / "out")]
        code, out, err = cli(capsys, "prepare", *argv)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert msg.replace("\\", "") in lines[0] or __import__("re").search(msg, lines[0]), (msg, lines[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv  # nothing written, no temp dirs
        assert list((tmp_path / "exists").iterdir()) == []


def test_force_overwrites(corpus, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli(capsys, "prepare", "--corpus", str(corpus), "--tokenizer", "byte", "--out", str(out))[0] == 0
    first = TokenStore.open(out).sha256
    assert cli(capsys, "prepare", "--corpus", str(corpus), "--tokenizer", "byte", "--out", str(out))[0] == 2
    assert cli(capsys, "prepare", "--corpus", str(corpus), "--tokenizer", "bpe:300", "--out", str(out),
               "--force")[0] == 0
    assert TokenStore.open(out).sha256 != first and TokenStore.open(out).vocab_size == 300


def test_cli_subprocess_exit_code(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tokenbound", "prepare", "--corpus", str(tmp_path / "nope"),
                          "--tokenizer", "byte", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such file" in res.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_gguf_tokenizer_store_decodes_exactly(corpus, tmp_path):
    from tokenbound.assets import smollm2_gguf

    train, _ = prepare(str(corpus), f"gguf:{smollm2_gguf()}", tmp_path / "g")
    assert train.vocab_size == 49152 and train.eot == 2
    assert train.manifest["roundtrip_mismatched_documents"] == 0
    assert texts_of(train) == [TEXTS[k] for k in sorted(TEXTS) if TEXTS[k]]
    assert TokenStore.open(tmp_path / "g").decode(train.document(0)) == TEXTS["a.py"]


# -- huge files are streamed in parts --------------------------------------------------------------------

def _stream_everything(monkeypatch, block=7):
    """Make every file over 20 bytes a streamed document; return the list of streamed identities."""
    from tokenbound.data import chunking, corpus as corpus_mod, encode as encode_mod

    monkeypatch.setattr(corpus_mod, "STREAM_FILE_BYTES", 20)
    monkeypatch.setattr(corpus_mod, "STREAM_BLOCK_BYTES", block)
    monkeypatch.setattr(chunking, "PART_CHARS", 16)
    monkeypatch.setattr(encode_mod, "BATCH_BYTES", 40)
    streamed, real = [], encode_mod._write_streamed

    def spy(doc, *args):
        streamed.append(doc.identity)
        return real(doc, *args)

    monkeypatch.setattr(encode_mod, "_write_streamed", spy)
    return streamed


@pytest.mark.parametrize("tokenizer", ["byte", "bpe:300"])
def test_streamed_files_give_the_same_store(corpus, tmp_path, monkeypatch, tokenizer):
    write_corpus(corpus, {"big.txt": "Grüße, 東京 😀 — it's\n  done.\n\nnext line here\n" * 40})
    whole, whole_val = prepare(str(corpus), tokenizer, tmp_path / "whole", val_fraction=0.5, seed=3,
                               **fit_all(tokenizer))
    streamed = _stream_everything(monkeypatch)
    parts, parts_val = prepare(str(corpus), tokenizer, tmp_path / "parts", val_fraction=0.5, seed=3,
                               **fit_all(tokenizer))
    assert "big.txt" in streamed and "sub/c.txt" in streamed and "e.txt" not in streamed
    assert parts.sha256 == whole.sha256 and parts_val.sha256 == whole_val.sha256
    assert parts.num_bytes == whole.num_bytes and parts.manifest["source"] == whole.manifest["source"]
    if tokenizer != "byte":  # same BPE although the trainer saw the big file in parts
        assert (parts.path / "tokenizer.json").read_text() == (whole.path / "tokenizer.json").read_text()
    big = (corpus / "big.txt").read_text()
    assert big in texts_of(parts) + texts_of(parts_val)


def test_streamed_bad_file_is_rolled_back(corpus, tmp_path, monkeypatch):
    (corpus / "huge_bad.txt").write_bytes(("fine text\n" * 30).encode() + b"\xff tail")
    (corpus / "sub" / "zz.txt").write_text("after the bad one")
    _stream_everything(monkeypatch)
    with pytest.raises(TokenboundError, match="huge_bad.txt: not valid UTF-8.*--skip-bad-files"):
        prepare(str(corpus), "byte", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    train, _ = prepare(str(corpus), "byte", tmp_path / "out", skip_bad_files=True)
    check_layout(train)
    assert train.manifest["source"]["skipped_bad_documents"] == 1
    expected = {**{k: v for k, v in TEXTS.items() if v}, "sub/zz.txt": "after the bad one"}
    assert texts_of(train) == [expected[k] for k in sorted(expected)]


def test_streamed_file_larger_than_the_bpe_cap(tmp_path, monkeypatch):
    root = write_corpus(tmp_path / "c", {"one.txt": "some words and more words\n" * 50})
    _stream_everything(monkeypatch)
    train, _ = prepare(str(root), "bpe:300", tmp_path / "out", bpe_train_max_bytes=100, tokenizer_fit="train-charged")
    bpe = train.manifest["bpe"]
    assert bpe["capped"] and 0 < bpe["train_bytes"] <= 100 and bpe["train_documents"] == 1
    assert texts_of(train) == ["some words and more words\n" * 50]


# -- hf: tokenizers --------------------------------------------------------------------------------------

def _hf_tokenizer(directory, lowercase=False):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if lowercase:  # a lossy tokenizer: decode(encode(text)) != text for text with capitals
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(TEXTS.values()), trainers.BpeTrainer(
        vocab_size=290, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    directory.mkdir()
    tok.save(str(directory / "tokenizer.json"))
    return f"hf:{directory}"


def test_hf_tokenizer_store(corpus, tmp_path):
    spec = _hf_tokenizer(tmp_path / "tok")
    train, _ = prepare(str(corpus), spec, tmp_path / "out")
    assert train.manifest["roundtrip_mismatched_documents"] == 0 and train.eot == 0
    assert texts_of(train) == [TEXTS[k] for k in sorted(TEXTS) if TEXTS[k]]
    lossy = _hf_tokenizer(tmp_path / "lossy", lowercase=True)
    train, _ = prepare(str(corpus), lossy, tmp_path / "out2")
    capitals = sum(1 for v in TEXTS.values() if v != v.lower())
    assert capitals and train.manifest["roundtrip_mismatched_documents"] == capitals


def test_hf_eot_that_text_produces_is_refused(corpus, tmp_path):
    spec = _hf_tokenizer(tmp_path / "tok")
    from tokenizers import Tokenizer

    x_id = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json")).token_to_id("x")
    with pytest.raises(TokenboundError, match=f"eot id {x_id} occurs inside a document"):
        prepare(str(corpus), spec, tmp_path / "out", eot=x_id)
    assert not (tmp_path / "out").exists()


def test_output_inside_the_corpus_directory_is_not_read(corpus, tmp_path):
    first, _ = prepare(str(corpus), "byte", corpus / "store")
    again, _ = prepare(str(corpus), "byte", corpus / "store", force=True)  # would hit tokens.bin otherwise
    assert again.sha256 == first.sha256 and again.num_documents == 5


@pytest.mark.parametrize("stream", [False, True])
def test_held_out_copies_of_training_documents_move_to_training(tmp_path, monkeypatch, stream):
    """Two files with the same text on either side of the seeded split would make val share a document with
    training (and a test-set certificate refuse it): the held-out copy goes to the end of training."""
    from tokenbound.evaluate.heldout import check_disjoint

    texts = {f"a{i}.txt": f"shared text {i}\n" * (i + 1) for i in range(12)}
    texts.update({f"b{i}.txt": f"shared text {i}\n" * (i + 1) for i in range(12)})  # b_i is a copy of a_i
    texts.update({f"u{i}.txt": f"unique {i}\n" for i in range(6)})
    corpus = write_corpus(tmp_path / "dups", texts)
    f, seed = 0.5, 1
    split = {k: is_held_out(seed, k, f) for k in texts}
    crossing = [i for i in range(12) if split[f"a{i}.txt"] != split[f"b{i}.txt"]]
    both_val = [i for i in range(12) if split[f"a{i}.txt"] and split[f"b{i}.txt"]]
    assert crossing and both_val  # this seed splits some copies across, and holds out some pairs whole
    if stream:
        _stream_everything(monkeypatch)
    train, val = prepare(str(corpus), "byte", tmp_path / "out", val_fraction=f, seed=seed)
    check_layout(train)
    check_layout(val)
    assert check_disjoint(val, train) == val.num_documents  # no shared document: the held-out check passes
    moved = [f"shared text {i}\n" * (i + 1) for i in crossing]
    assert train.manifest["split"]["duplicates_moved_to_train"] == len(crossing)
    assert val.manifest["split"]["duplicates_moved_to_train"] == len(crossing)
    assert sorted(texts_of(train)[-len(crossing):]) == sorted(moved)
    # a pair held out whole stays held out; nothing is lost; bytes follow their documents
    assert all(texts_of(val).count(f"shared text {i}\n" * (i + 1)) == 2 for i in both_val)
    assert sorted(texts_of(train) + texts_of(val)) == sorted(texts.values())
    assert train.num_bytes == sum(len(t.encode()) for t in texts_of(train))
    assert val.num_bytes == sum(len(t.encode()) for t in texts_of(val))
