import json
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tokenbound.data import corpus as corpus_mod
from tokenbound.data.corpus import open_corpus
from tokenbound.data.split import check_val_fraction, held_out_score, is_held_out
from tokenbound.errors import TokenboundError


def docs_of(c):
    return list(c.documents())


# -- stdlib ----------------------------------------------------------------------------------------------

def test_stdlib_excludes_tests_and_site_packages_sorted():
    c = open_corpus("stdlib")
    rels = [f.relative_to(c.root).as_posix() for f in c.files]
    assert c.root == Path(sysconfig.get_paths()["stdlib"])
    assert rels == sorted(rels) and len(rels) > 300
    assert "json/decoder.py" in rels and "os.py" in rels
    assert not any(set(r.split("/")) & {"site-packages", "dist-packages"} for r in rels)
    assert not any(set(r.split("/")[:-1]) & {"test", "tests", "idle_test"} for r in rels)
    with_tests = open_corpus("stdlib+tests")
    extra = {f.relative_to(c.root).as_posix() for f in with_tests.files} - set(rels)
    assert any(r.startswith("test/") for r in extra)
    assert len(open_corpus("stdlib", include_tests=True).files) == len(with_tests.files)


def test_stdlib_glob_slice_reads_the_files():
    c = open_corpus("stdlib", glob="json/*.py")
    docs = docs_of(c)
    assert [d.identity for d in docs] == sorted(d.identity for d in docs)
    assert "json/__init__.py" in [d.identity for d in docs]
    for d in docs:
        assert d.text == (c.root / d.identity).read_text(encoding="utf-8") and d.problem is None
    with pytest.raises(TokenboundError, match="no standard-library files"):
        open_corpus("stdlib", glob="no_such_dir/*.py")


# -- text files ------------------------------------------------------------------------------------------

def test_directory_corpus_sorted_relative_ids_hidden_ignored(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("zz")
    (tmp_path / "a.txt").write_text("aa")
    (tmp_path / "c.md").write_text("cc")
    (tmp_path / ".hidden").write_text("no")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("no")
    docs = docs_of(open_corpus(str(tmp_path)))
    assert [(d.identity, d.text) for d in docs] == [("a.txt", "aa"), ("b/z.txt", "zz"), ("c.md", "cc")]
    docs = docs_of(open_corpus(str(tmp_path), glob="**/*.txt"))
    assert [d.identity for d in docs] == ["a.txt", "b/z.txt"]


def test_directory_without_matching_files(tmp_path):
    (tmp_path / "a.txt").write_text("aa")
    with pytest.raises(TokenboundError, match="no files match"):
        open_corpus(str(tmp_path), glob="*.rst")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenboundError, match="no files match"):
        open_corpus(str(empty))


def test_single_file_is_one_document(tmp_path):
    f = tmp_path / "book.txt"
    f.write_text("line 1\nline 2\n")
    docs = docs_of(open_corpus(str(f)))
    assert [(d.identity, d.text) for d in docs] == [("book.txt", "line 1\nline 2\n")]
    with pytest.raises(TokenboundError, match="^glob"):
        open_corpus(str(f), glob="*.txt")


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(TokenboundError, match="no such file or directory"):
        open_corpus(str(tmp_path / "nope"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(TokenboundError, match="empty file"):
        open_corpus(str(tmp_path / "empty.txt"))


def test_undecodable_file_is_reported_not_raised(tmp_path):
    (tmp_path / "good.txt").write_text("ok")
    (tmp_path / "bad.txt").write_bytes(b"abc\xff\xfe")
    docs = docs_of(open_corpus(str(tmp_path)))
    bad = docs[0]
    assert bad.identity == "bad.txt" and bad.text is None
    assert "not valid UTF-8" in bad.problem and "0xff" in bad.problem and "offset 3" in bad.problem
    assert docs[1].text == "ok" and docs[1].problem is None


# -- jsonl -----------------------------------------------------------------------------------------------

def test_jsonl_lines_fields_and_problems(tmp_path):
    f = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": "first", "id": 1}), "", json.dumps({"body": "other field"}),
             "{broken", json.dumps({"text": 5}), json.dumps({"text": "\ud800"}), json.dumps({"text": None}),
             json.dumps({"text": "naïve\n<|endoftext|>"})]
    f.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b'{"text": "\xff"}\n')
    docs = docs_of(open_corpus(str(f)))
    assert [d.identity for d in docs] == [str(i) for i in range(1, 10)]
    assert docs[0].text == "first" and docs[1].text == ""  # blank line: empty document
    assert "no 'text' field" in docs[2].problem and f"{f}:3" in docs[2].problem
    assert "not valid JSON" in docs[3].problem
    assert "is a int" in docs[4].problem
    assert "surrogate" in docs[5].problem
    assert docs[6].text == "" and docs[6].problem is None
    assert docs[7].text == "naïve\n<|endoftext|>"
    assert "not valid UTF-8" in docs[8].problem
    other = docs_of(open_corpus(str(f), text_field="body"))
    assert other[2].text == "other field" and other[0].problem is not None


# -- parquet ---------------------------------------------------------------------------------------------

def test_parquet_rows_and_schema_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a", None, "ç", ""], "n": [1, 2, 3, 4]}), f)
    docs = docs_of(open_corpus(str(f)))
    assert [(d.identity, d.text) for d in docs] == [("0", "a"), ("1", ""), ("2", "ç"), ("3", "")]
    with pytest.raises(TokenboundError, match="no column 'body'"):
        open_corpus(str(f), text_field="body")
    with pytest.raises(TokenboundError, match="expected string"):
        open_corpus(str(f), text_field="n")
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(TokenboundError, match="not a Parquet file"):
        open_corpus(str(tmp_path / "x.parquet"))


# -- tokens: ---------------------------------------------------------------------------------------------

def test_tokens_split_at_eot_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "TOKENS_CHUNK", 3)
    ids = np.array([5, 6, 7, 8, 0, 0, 9, 0, 4, 4], dtype=np.int32)
    np.save(tmp_path / "ids.npy", ids)
    docs = docs_of(open_corpus(f"tokens:{tmp_path}/ids.npy", vocab_size=10, eot=0))
    assert [d.identity for d in docs] == ["0", "1", "2", "3"]
    assert [d.ids.tolist() for d in docs] == [[5, 6, 7, 8], [], [9], [4, 4]]
    np.save(tmp_path / "ends.npy", np.array([1, 0], dtype=np.uint16))
    assert [d.ids.tolist() for d in docs_of(open_corpus(f"tokens:{tmp_path}/ends.npy", vocab_size=3, eot=0))] \
        == [[1]]


@pytest.mark.parametrize("array,kwargs,msg", [
    (np.array([1, 2, 5]), dict(vocab_size=5, eot=0), "id 5 at position 2 is outside"),
    (np.array([1, -1]), dict(vocab_size=5, eot=0), "id -1 at position 1"),
    (np.array([1.0, 2.0]), dict(vocab_size=5, eot=0), "integer array"),
    (np.array([True, False]), dict(vocab_size=5, eot=0), "integer array"),
    (np.zeros((2, 2), dtype=np.int64), dict(vocab_size=5, eot=0), "1-D"),
    (np.array([1, 2]), dict(vocab_size=5, eot=5), "--eot: 5 is outside"),
    (np.array([1, 2]), dict(vocab_size=None, eot=0), "--vocab-size: required"),
    (np.array([1, 2]), dict(vocab_size=5, eot=None), "--eot: required"),
    (np.array([1, 2]), dict(vocab_size=1, eot=0), "--vocab-size: must be"),
])
def test_tokens_errors(tmp_path, array, kwargs, msg):
    np.save(tmp_path / "ids.npy", array)
    with pytest.raises(TokenboundError) as e:
        open_corpus(f"tokens:{tmp_path}/ids.npy", **kwargs)
    assert re.search(msg, e.value.cli_message()), e.value.cli_message()


def test_tokens_never_unpickles(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "x", None], dtype=object), allow_pickle=True)
    with pytest.raises(TokenboundError, match="not a readable .npy"):
        open_corpus(f"tokens:{tmp_path}/obj.npy", vocab_size=5, eot=0)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(TokenboundError, match="not a readable .npy"):
        open_corpus(f"tokens:{tmp_path}/junk.npy", vocab_size=5, eot=0)
    with pytest.raises(TokenboundError, match="no such file"):
        open_corpus(f"tokens:{tmp_path}/missing.npy", vocab_size=5, eot=0)


# -- held-out split --------------------------------------------------------------------------------------

def test_split_is_seeded_hash_of_identity():
    ids = [f"doc{i}.txt" for i in range(4000)]
    held = [is_held_out(0, i, 0.1) for i in ids]
    assert held == [is_held_out(0, i, 0.1) for i in ids]  # deterministic
    assert 300 < sum(held) < 500  # ~10% (binomial sd ~19)
    assert held != [is_held_out(1, i, 0.1) for i in ids]  # the seed matters
    assert not any(is_held_out(0, i, 0.0) for i in ids)
    # monotone in the fraction: held out at 0.1 => held out at 0.3
    assert all(is_held_out(0, i, 0.3) for i, h in zip(ids, held) if h)
    assert all(0.0 <= held_out_score(0, i) < 1.0 for i in ids[:50])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_val_fraction_range(bad):
    with pytest.raises(TokenboundError, match="^val_fraction"):
        check_val_fraction(bad)
