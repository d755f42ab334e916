"""The ``python`` corpus (docs/data.md): roots in a fixed order, .py files only, de-duplicated by content, every
file read listed in the store's corpus_files.jsonl; tested on fake roots built in tmp_path."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from tokenbound.data import installed
from tokenbound.data.installed import FILE_LIST, PythonCorpus, SourceRoot, read_file_list
from tokenbound.data.prepare import prepare
from tokenbound.data.walk import _glob, matching_files
from tokenbound.errors import TokenboundError

from test_prepare import write_corpus

STDLIB = {
    "json/__init__.py": "from .decoder import x\n",
    "json/decoder.py": "x = 1\n",
    "test/test_json.py": "import json\nassert json\n",
    "site-packages/inside.py": "never read: installed packages are their own roots\n",
    "shared.py": "# the same text twice\n",
}
SITE = {
    "pkg/__init__.py": "",                                         # empty like other/__init__.py, read first
    "pkg/core.py": "def core():\n    return 'core'\n",
    "pkg/tests/test_core.py": "from pkg.core import core\n",
    "pkg/copy_of_shared.py": "# the same text twice\n",          # a duplicate of stdlib/shared.py: dropped
    "pkg/data.json": "{\"not\": \"python\"}\n",
    "pkg/__pycache__/core.py": "cached = True\n",                  # a cache folder: skipped
    "other/__init__.py": "",
}
DIST = {"zeta.py": "Z = 'last root'\n", "alpha.py": "A = 'first file of the root'\n"}


@pytest.fixture
def roots(tmp_path):
    return [SourceRoot("stdlib", write_corpus(tmp_path / "lib" / "python3", STDLIB), stdlib=True),
            SourceRoot("site-packages", write_corpus(tmp_path / "venv" / "site-packages", SITE)),
            SourceRoot("dist-packages", write_corpus(tmp_path / "usr" / "dist-packages", DIST))]


@pytest.fixture
def fake_python(monkeypatch, roots):
    monkeypatch.setattr(installed, "python_roots", lambda: roots)
    return roots


def test_documents_in_root_then_path_order_deduplicated(roots):
    corpus = PythonCorpus("python", roots)
    docs = list(corpus.documents())
    assert [d.identity for d in docs] == [
        "stdlib/json/__init__.py", "stdlib/json/decoder.py", "stdlib/shared.py", "stdlib/test/test_json.py",
        "site-packages/other/__init__.py", "site-packages/pkg/core.py", "site-packages/pkg/tests/test_core.py",
        "dist-packages/alpha.py", "dist-packages/zeta.py"]
    assert [d.text for d in docs] == [STDLIB[d.identity.split("/", 1)[1]] for d in docs[:4]] + [
        SITE["other/__init__.py"], SITE["pkg/core.py"], SITE["pkg/tests/test_core.py"], DIST["alpha.py"],
        DIST["zeta.py"]]
    d = corpus.describe()
    assert d["kind"] == "python" and d["num_files"] == 9
    assert d["duplicate_files"] == 2 and d["duplicate_bytes"] == len(SITE["pkg/copy_of_shared.py"])  # + 0 bytes
    assert d["skipped_directories"] == 1 and d["skipped_directory_examples"] == ["site-packages/pkg/__pycache__"]
    assert [r["id"] for r in d["roots"]] == ["stdlib", "site-packages", "dist-packages"]
    assert corpus.location("site-packages/pkg/core.py") == os.path.realpath(roots[1].path / "pkg" / "core.py")


def test_order_does_not_depend_on_creation_order(tmp_path, roots):
    """The same files written in the reverse order (another directory listing order) give the same documents."""
    again = [SourceRoot(r.id, write_corpus(tmp_path / "again" / r.id, dict(reversed(list(files.items())))),
                        r.stdlib)
             for r, files in zip(roots, (STDLIB, SITE, DIST))]
    first = [(d.identity, d.text) for d in PythonCorpus("python", roots).documents()]
    assert [(d.identity, d.text) for d in PythonCorpus("python", again).documents()] == first


def test_store_lists_every_file_and_reproduces(fake_python, tmp_path):
    train, val = prepare("python", "byte", tmp_path / "a", val_fraction=0.3, seed=1)
    src = train.manifest["source"]
    listed = read_file_list(train.path / FILE_LIST)
    assert [f"{f.root}/{f.path}" for f in listed] == [
        "stdlib/json/__init__.py", "stdlib/json/decoder.py", "stdlib/shared.py", "stdlib/test/test_json.py",
        "site-packages/other/__init__.py", "site-packages/pkg/core.py", "site-packages/pkg/tests/test_core.py",
        "dist-packages/alpha.py", "dist-packages/zeta.py"]
    by_id = {r.id: r.path for r in fake_python}
    for f in listed:  # the list says exactly which bytes were read
        data = (by_id[f.root] / f.path).read_bytes()
        assert f.sha256 == hashlib.sha256(data).hexdigest() and f.bytes == len(data)
    data = (train.path / FILE_LIST).read_bytes()
    assert src["file_list"] == {"file": FILE_LIST, "sha256": hashlib.sha256(data).hexdigest(), "files": 9,
                                "bytes": sum(f.bytes for f in listed)}
    assert (val.path / FILE_LIST).read_bytes() == data and val.manifest["source"] == src
    stored = sorted(train.decode(train.document(j)) for j in range(train.num_documents)) + \
        sorted(val.decode(val.document(j)) for j in range(val.num_documents))
    assert sorted(stored) == sorted((by_id[f.root] / f.path).read_text() for f in listed if f.bytes)  # the listed files
    again, _ = prepare("python", "byte", tmp_path / "b", val_fraction=0.3, seed=1)
    assert again.sha256 == train.sha256 and (again.path / FILE_LIST).read_bytes() == data
    strip = lambda m: {k: v for k, v in m.items() if k != "created"}  # noqa: E731
    assert strip(again.manifest) == strip(train.manifest)


def test_a_failed_run_leaves_nothing(fake_python, tmp_path, monkeypatch):
    (fake_python[1].path / "pkg" / "bad.py").write_bytes(b"x = '\xff'\n")  # skipped and counted, as in stdlib
    train, _ = prepare("python", "byte", tmp_path / "ok")
    assert train.manifest["source"]["skipped_bad_documents"] == 1
    assert "site-packages/pkg/bad.py" in {f"{f.root}/{f.path}" for f in read_file_list(train.path / FILE_LIST)}

    from tokenbound.data import encode

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "_start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare("python", "byte", tmp_path / "cut")
    assert not (tmp_path / "cut").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["lib", "ok", "usr", "venv"]


def test_python_roots_of_this_interpreter():
    roots = installed.python_roots()
    assert roots[0].id == "stdlib" and roots[0].stdlib
    assert len({os.path.realpath(r.path) for r in roots}) == len(roots) == len({r.id for r in roots})
    for r in roots[1:]:
        assert r.path.name in ("site-packages", "dist-packages") and r.id.startswith(r.path.name)
    on_path = {os.path.realpath(p) for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")
               and os.path.isdir(p)}
    assert on_path <= {os.path.realpath(r.path) for r in roots}


def test_bad_roots(tmp_path):
    with pytest.raises(ValueError, match="distinct ids"):
        PythonCorpus("python", [SourceRoot("a", tmp_path), SourceRoot("a", tmp_path)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenboundError, match="^corpus python: no files match") as e:  # the parameter's name
        PythonCorpus("python", [SourceRoot("site-packages", tmp_path / "empty")])
    assert e.value.cli_message().startswith("--corpus python: no files match")  # and the CLI's flag


def test_fast_walk_lists_what_path_glob_lists(tmp_path):
    """The scandir walk behind `**/NAME` patterns finds the same files and skipped folders as Path.glob."""
    root = write_corpus(tmp_path / "t", {"a.py": "", "b.txt": "", "d/e.py": "", ".hidden.py": "", ".git/x.py": "",
                                         "node_modules/m/y.py": "", "env/pyvenv.cfg": "", "env/lib/z.py": "",
                                         "d/__pycache__/c.py": "", "d/sub/F.PY": "", "d/x.py/inner.py": ""})
    (root / "link").symlink_to(root / "d", target_is_directory=True)  # ** does not enter linked folders
    (root / "linked.py").symlink_to(root / "a.py")
    for pattern in ["**/*.py", "**/*", "**/*.PY", "**/[ab].*"]:
        skipped: list[str] = []
        files = matching_files(root, pattern, skipped)
        found, expected_skipped = _glob(root, pattern)
        assert [f.relative_to(root).as_posix() for f in files] == sorted(found), pattern
        assert skipped == sorted(expected_skipped), pattern
    assert [f.relative_to(root).as_posix() for f in matching_files(root, "**/*.py")] == [
        "a.py", "d/e.py", "d/x.py/inner.py", "linked.py"]


def test_cli_prints_the_file_list(fake_python, tmp_path, capsys):
    from tokenbound.cli import main

    assert main(["prepare", "--corpus", "python", "--tokenizer", "byte", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "read 9 files" in out and FILE_LIST in out and "2 duplicate files" in out
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["source"]["kind"] == "python"
