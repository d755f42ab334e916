"""``prepare --tokenizer-corpus SPEC`` (docs/data.md): the BPE is fitted on another corpus, checked disjoint from
the stored one; every document is stored; the manifest records what the tokenizer was fitted on."""
from __future__ import annotations

import hashlib

import pytest

from tokenbound.cli import main
from tokenbound.data.corpus import open_corpus
from tokenbound.data.prepare import prepare
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.heldout import tokenizer_charge

from test_prepare import write_corpus

STORED = {"a.py": "def alpha(x):\n    return x + 1\n", "b.py": "BETA = [1, 2, 3]\n", "pkg/__init__.py": "# pkg\n",
          "pkg/c.py": "class Gamma:\n    pass\n", "empty.py": ""}
FIT = {"t1.py": "def test_alpha():\n    assert alpha(1) == 2\n" * 3, "t2.py": "for i in range(3):\n    print(i)\n",
       "tests/__init__.py": "# pkg\n",  # the same content as a stored file: left out of the fit
       "empty.py": ""}


@pytest.fixture
def dirs(tmp_path):
    return write_corpus(tmp_path / "stored", STORED), write_corpus(tmp_path / "fit", FIT)


def texts_of(store):
    return [store.decode(store.document(j)) for j in range(store.num_documents)]


def test_fitted_on_the_other_corpus_and_every_document_stored(dirs, tmp_path):
    stored, fit = dirs
    train, val = prepare(str(stored), "bpe:300", tmp_path / "out", val_fraction=0.4, seed=2,
                         tokenizer_corpus=str(fit))
    assert sorted(texts_of(train) + texts_of(val)) == sorted(t for t in STORED.values() if t)  # no tokenizer split
    tf = train.manifest["tokenizer_fit"]
    assert tf["mode"] == "tokenizer-corpus" and val.manifest["tokenizer_fit"] == tf
    # the tokenizer corpus is recorded with the hash `prepare` gives it as a corpus of its own
    alone, _ = prepare(str(fit), "byte", tmp_path / "alone")
    assert tf["corpus"]["sha256"] == alone.manifest["source"]["sha256"] and tf["corpus"]["documents"] == 4
    assert tf["corpus"]["spec"] == str(fit) and tf["corpus"]["kind"] == "text_directory"
    used = ["t1.py", "t2.py"]
    assert tf["documents"] == 2 and tf["bytes"] == sum(len(FIT[k].encode()) for k in used)
    assert tf["identities_sha256"] == hashlib.sha256("".join(f"{k}\n" for k in used).encode()).hexdigest()
    assert tf["disjoint"]["shared_content_left_out"] == 1 and tf["disjoint"]["shared_content_examples"] == [
        "tests/__init__.py"]
    assert tf["disjoint"]["corpus_documents_checked"] == 5
    assert train.manifest["bpe"]["train_documents"] == 2
    # the left-out document did not shape the tokenizer: the same fit without it gives the same tokenizer
    (fit / "tests" / "__init__.py").unlink()
    again, _ = prepare(str(stored), "bpe:300", tmp_path / "again", val_fraction=0.4, seed=2,
                       tokenizer_corpus=str(fit))
    assert (again.path / "tokenizer.json").read_bytes() == (train.path / "tokenizer.json").read_bytes()
    assert again.sha256 == train.sha256
    # fitted on data the store does not hold: nothing is charged, for the train or the held-out certificate
    assert tokenizer_charge(train, heldout=False) == {} and tokenizer_charge(val, heldout=True) == {}


def test_overlapping_corpora_are_refused_and_nothing_written(dirs, tmp_path):
    stored, _ = dirs
    with pytest.raises(TokenboundError, match=r"^tokenizer_corpus .*pkg: reads .*pkg/__init__.py, which --corpus "
                                              r".* reads too; the two corpora must be disjoint") as e:
        prepare(str(stored), "bpe:300", tmp_path / "out", tokenizer_corpus=str(stored / "pkg"))
    assert e.value.cli_message().startswith(f"--tokenizer-corpus {stored / 'pkg'}: reads ")
    assert not (tmp_path / "out").exists()


def test_all_shared_is_an_error(dirs, tmp_path):
    stored, _ = dirs
    copy = write_corpus(tmp_path / "copy", {k: v for k, v in STORED.items()})
    with pytest.raises(TokenboundError, match=r"no non-empty document to train bpe:300 on \(4 share their content"):
        prepare(str(stored), "bpe:300", tmp_path / "out", tokenizer_corpus=str(copy))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"tokenizer": "byte"}, "tokenizer_corpus: only for fitting a bpe:N tokenizer"),
    ({"tokenizer_fit": "train-charged"}, "omit --tokenizer-fit and --tokenizer-fraction"),
    ({"tokenizer_fraction": 0.2}, "omit --tokenizer-fit and --tokenizer-fraction"),
    ({"tokenizer_corpus": "no/such/dir"}, "tokenizer_corpus no/such/dir: no such file or directory"),
])
def test_bad_combinations(dirs, tmp_path, kwargs, message):
    stored, fit = dirs
    args = {"tokenizer": "bpe:300", "tokenizer_corpus": str(fit), **kwargs}
    tokenizer = args.pop("tokenizer")
    with pytest.raises(TokenboundError, match=message) as e:
        prepare(str(stored), tokenizer, tmp_path / "out", **args)
    assert e.value.param == "tokenizer_corpus"  # the library names its parameter, the CLI the flag
    assert e.value.cli_message() == str(e.value).replace("tokenizer_corpus", "--tokenizer-corpus", 1)
    assert not (tmp_path / "out").exists()


def test_stdlib_tests_is_the_complement_of_stdlib():
    """stdlib-tests reads exactly the files stdlib+tests reads and stdlib does not: disjoint by path."""
    only, without, both = (open_corpus(s) for s in ("stdlib-tests", "stdlib", "stdlib+tests"))
    assert only.files and not set(only.files) & set(without.files)
    assert sorted(only.files + without.files) == sorted(both.files)
    assert all({"test", "tests", "idle_test"} & set(f.relative_to(only.root).parts[:-1]) for f in only.files)
    assert only.describe()["only_tests"] is True and "only_tests" not in without.describe()


def test_cli_summary(dirs, tmp_path, capsys):
    stored, fit = dirs
    assert main(["prepare", "--corpus", str(stored), "--tokenizer", "bpe:300", "--tokenizer-corpus", str(fit),
                 "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert f"fitted on --tokenizer-corpus {fit}: 2 documents" in out
    assert "1 document with a stored document's content left out" in out
