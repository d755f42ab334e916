"""Artifacts that refer to each other survive being moved: paths are recorded relative to the referring artifact
(artifacts.path_record) and resolved against its location on load; the absolute path is only a hint."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenbound.artifacts import path_record, resolve_recorded_path
from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError


def _store(path, seed=0, vocab=24, docs=80):
    rng = np.random.default_rng(seed)
    stream, offsets = [], []
    for _ in range(docs):
        start = int(rng.integers(1, vocab))
        doc = [1 + (start + 2 * k + int(rng.integers(0, 2))) % (vocab - 1) for k in range(int(rng.integers(10, 50)))]
        offsets.append(len(stream))
        stream += doc + [0]
    return write_store(path, np.array(stream), np.array(offsets), vocab, 0)


def _cli(argv, capsys):
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.err.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """origin/work/{data, runs/tiny, compressed, markov, certs/gpt.json, certs/markov.json}, all made with
    paths relative to origin/ (the directory the commands ran in)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("portable")
    origin = root / "origin"
    (origin / "work").mkdir(parents=True)
    _store(origin / "work" / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(origin)
        assert main(["train", "--data", "work/data", "--preset", "tiny", "--steps", "3", "--out", "work/runs/tiny",
                     "--no-progress"]) == 0
        # QAT reads the run's own training store (no --data)
        assert main(["compress", "--run", "work/runs/tiny", "--method", "qat:levels=5,steps=2",
                     "--out", "work/compressed"]) == 0
        assert main(["markov", "--data", "work/data", "--order", "1", "--out", "work/markov"]) == 0
        assert main(["bound", "--compressed", "work/compressed", "--data", "work/data", "--out",
                     "work/certs/gpt.json", "--samples", "60", "--doc-samples", "3"]) == 0
        assert main(["bound", "--markov", "work/markov", "--data", "work/data", "--out", "work/certs/markov.json",
                     "--samples", "200"]) == 0
    return root


@pytest.fixture
def moved(built, tmp_path, monkeypatch):
    """The working folder moved (shutil.move) to another place, nothing left where it was made (so the recorded
    absolute paths lead nowhere); the cwd is a third directory. The module's copy is put back afterwards."""
    shutil.copytree(built / "origin" / "work", tmp_path / "pristine")
    (tmp_path / "far" / "away").mkdir(parents=True)
    shutil.move(built / "origin" / "work", tmp_path / "far" / "away" / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    yield tmp_path / "far" / "away" / "moved"
    shutil.move(tmp_path / "pristine", built / "origin" / "work")


def test_records_are_relative_to_the_referring_artifact(built):
    work = built / "origin" / "work"
    cert = json.loads((work / "certs" / "gpt.json").read_text())
    assert cert["model"]["path"] == "../compressed" and cert["model"]["relative_to"] == "artifact"
    assert cert["data"]["path"] == "../data" and cert["data"]["training_store"]["path"] == "../data"
    assert Path(cert["data"]["abs_path"]) == (work / "data").absolute()
    assert cert["stats"]["path"] == "gpt.stats/tokenstats.npz"
    assert cert["document_stats"]["path"] == "gpt.docstats/tokenstats.npz"
    run_man = json.loads((work / "runs" / "tiny" / "manifest.json").read_text())
    run_cfg = json.loads((work / "runs" / "tiny" / "config.json").read_text())
    assert run_man["data"]["path"] == run_cfg["data"]["path"] == "../../data"
    comp = json.loads((work / "compressed" / "manifest.json").read_text())
    assert comp["source"]["path"] == "../runs/tiny" and comp["qat_log"]["data"]["path"] == "../data"
    markov = json.loads((work / "markov" / "manifest.json").read_text())
    assert markov["source_store"]["path"] == "../data" and markov["source_store"]["sha256"] == cert["data"]["sha256"]


def test_moved_folder_verifies_from_another_directory(moved, capsys):
    for name in ("gpt", "markov"):
        rc, err = _cli(["verify", str(moved / "certs" / f"{name}.json")], capsys)
        assert rc == 0, err
    # relative to the cwd as well
    rc, err = _cli(["verify", "../far/away/moved/certs/gpt.json"], capsys)
    assert rc == 0, err


def test_moved_run_finds_its_store_for_qat(moved, capsys):
    rc, err = _cli(["compress", "--run", str(moved / "runs" / "tiny"), "--method", "qat:levels=5,steps=1",
                    "--out", "again"], capsys)
    assert rc == 0, err


def test_moved_store_needs_data_flag(moved, tmp_path, capsys):
    new = tmp_path / "new_home" / "store"
    new.parent.mkdir()
    shutil.move(moved / "data", new)
    cert = moved / "certs" / "gpt.json"
    rc, err = _cli(["verify", str(cert)], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "--data" in err and "not found" in err
    rc, err = _cli(["verify", str(cert), "--data", str(new)], capsys)
    assert rc == 0, err
    # --data must be a store, not just any path
    rc, err = _cli(["verify", str(cert), "--data", str(tmp_path / "new_home")], capsys)
    assert rc == 2 and err.count("\n") == 0 and "--data" in err


def test_moved_model_needs_model_flag(moved, tmp_path, capsys):
    new = tmp_path / "models" / "c"
    new.parent.mkdir()
    shutil.move(moved / "compressed", new)
    cert = moved / "certs" / "gpt.json"
    rc, err = _cli(["verify", str(cert)], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "--model" in err
    rc, err = _cli(["verify", str(cert), "--model", str(new)], capsys)
    assert rc == 0, err
    assert _cli(["verify", str(cert), "--skip-model"], capsys)[0] == 0   # the model is not looked for


def test_certificate_moved_alone_uses_the_absolute_hint_only_if_the_sha256_matches(built, tmp_path, capsys):
    work = tmp_path / "w"
    shutil.copytree(built / "origin" / "work", work)
    cert = work / "certs" / "markov.json"
    json_cert = json.loads(cert.read_text())
    for key in ("data", "model"):   # point the hints at this copy, as if it had been written here
        json_cert[key]["abs_path"] = str(work / Path(json_cert[key]["path"]).name)
    cert.write_text(json.dumps(json_cert))
    shutil.move(work / "certs", tmp_path / "certs")        # the relative paths now lead nowhere
    rc, err = _cli(["verify", str(tmp_path / "certs" / "markov.json")], capsys)
    assert rc == 0, err
    # a store with another sha256 at the hinted place is not taken for the certified one
    shutil.rmtree(work / "data")
    _store(work / "data", seed=5)
    rc, err = _cli(["verify", str(tmp_path / "certs" / "markov.json")], capsys)
    assert rc == 2 and "data" in err and "not found" in err


def test_old_cwd_relative_certificate_still_verifies_from_its_directory(built, tmp_path, monkeypatch, capsys):
    shutil.copytree(built / "origin" / "work", tmp_path / "work")
    cert_path = tmp_path / "work" / "certs" / "markov.json"
    cert = json.loads(cert_path.read_text())
    for ref in (cert["data"], cert["model"], cert["data"]["training_store"]):  # the format before path_record
        for key in ("relative_to", "abs_path"):
            ref.pop(key)
    cert["data"]["path"] = cert["data"]["training_store"]["path"] = "work/data"
    cert["model"]["path"] = "work/markov"
    cert_path.write_text(json.dumps(cert))
    monkeypatch.chdir(tmp_path)
    assert _cli(["verify", "work/certs/markov.json"], capsys)[0] == 0
    monkeypatch.chdir(tmp_path / "work")
    rc, err = _cli(["verify", "certs/markov.json"], capsys)
    assert rc == 2 and "work/data" in err


def test_resolve_recorded_path_library(tmp_path):
    store = _store(tmp_path / "a" / "data")
    ref = {**path_record(tmp_path / "a" / "data", tmp_path / "a" / "certs"), "sha256": store.sha256}
    assert ref["path"] == "../data"
    (tmp_path / "a" / "certs").mkdir()
    assert resolve_recorded_path(ref, tmp_path / "a" / "certs", "data") == tmp_path / "a" / "certs" / "../data"
    with pytest.raises(TokenboundError, match="data: .* not found"):
        resolve_recorded_path(ref, tmp_path, "data")      # no hint identification offered: no fallback
    with pytest.raises(TokenboundError, match="no path"):
        resolve_recorded_path({"sha256": "x"}, tmp_path, "data")
