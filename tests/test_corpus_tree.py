"""A source tree prepares as it is: version-control, cache and virtual-environment folders and binary files are
skipped and counted; a file that looks like text but does not decode is still an error (docs/data.md)."""
from __future__ import annotations

import json
import py_compile

import pytest

from tokenbound.cli import main
from tokenbound.data.corpus import open_corpus


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def a():\n    return 1\n")
    (root / "pkg" / "b.py").write_text("B = 2\n")
    py_compile.compile(str(root / "pkg" / "a.py"), cfile=str(root / "pkg" / "__pycache__" / "a.cpython.pyc"))
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "objects" / "ab").write_bytes(b"\x78\x9c\xff\xfe")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "i.js").write_text("x = 1")
    (root / "env" / "lib").mkdir(parents=True)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "env" / "lib" / "site.py").write_text("y = 2\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "blob").write_bytes(b"abc\x00\x01\x02" * 10)  # no suffix: binary by its NUL byte
    (root / "README").write_text("a small tree\n")
    return root


def test_directory_corpus_skips_caches_vcs_venvs_and_binaries(tree):
    corpus = open_corpus(str(tree))
    assert [d.identity for d in corpus.documents()] == ["README", "pkg/a.py", "pkg/b.py"]
    desc = corpus.describe()
    assert desc["skipped_directories"] == 4
    assert desc["skipped_directory_examples"] == [".git", "env", "node_modules", "pkg/__pycache__"]
    assert desc["skipped_binary_files"] == 2 and desc["num_files"] == 3
    assert desc["skipped_binary_examples"] == ["blob (NUL byte)", "logo.png (suffix .png)"]
    list(corpus.documents())  # a second pass (as BPE training makes) counts nothing twice
    assert corpus.describe()["skipped_binary_files"] == 2


def test_prepare_on_a_source_tree_records_and_prints_what_it_skipped(tree, tmp_path, capsys):
    assert main(["prepare", "--corpus", str(tree), "--tokenizer", "byte", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "3 documents" in out
    assert "skipped 2 binary files and 4 folders" in out and "pkg/__pycache__" in out
    src = json.loads((tmp_path / "s" / "manifest.json").read_text())["source"]
    assert src["documents"] == 3 and src["skipped_binary_files"] == 2 and src["skipped_directories"] == 4
    assert src["skipped_bad_documents"] == 0


def test_text_that_does_not_decode_is_still_an_error(tree, tmp_path, capsys):
    (tree / "latin1.txt").write_bytes(b"caf\xe9\n")
    assert main(["prepare", "--corpus", str(tree), "--tokenizer", "byte", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "latin1.txt: not valid UTF-8" in err and "--skip-bad-files" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_a_single_named_file_is_read_as_given(tmp_path):
    f = tmp_path / "data.txt"
    f.write_bytes(b"text with a \x00 NUL")
    docs = list(open_corpus(str(f)).documents())
    assert [d.text for d in docs] == ["text with a \x00 NUL"]
