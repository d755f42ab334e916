"""End to end over the bound engine's user-facing verbs: bound → verify → report, on a Markov model."""
import json
import shutil

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.evaluate.bound import bound
from tokenbound.evaluate.verify import verify
from tokenbound.models.markov_fit import fit_store


def _store(path, seed, num_docs=150, vocab=16):
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(num_docs):
        length = int(rng.integers(5, 60))
        start = int(rng.integers(1, vocab))
        docs.append(np.array([1 + (start + 3 * k + int(rng.integers(0, 2))) % (vocab - 1) for k in range(length)]
                             + [0]))
    tokens = np.concatenate(docs)
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return write_store(path, tokens, offsets, vocab, 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("bvr")
    _store(d / "store", seed=0)
    _store(d / "store" / "val", seed=1, num_docs=40)  # a held-out split in the usual place
    fit_store(d / "store", 2, d / "markov")
    assert main(["bound", "--markov", str(d / "markov"), "--data", str(d / "store"), "--out",
                 str(d / "cert.json"), "--samples", "400"]) == 0
    return d


def test_certificate_has_required_keys_and_verifies(setup):
    cert = json.loads((setup / "cert.json").read_text())
    for key in ("schema", "bound_bits_per_token", "method", "random_guess_bits", "vacuous", "terms", "inputs",
                "bounds", "top_k_error_bounds", "model", "data"):
        assert key in cert
    assert cert["inputs"]["message_bits"] > 0 and cert["model"]["type"] == "tokenbound.markov_model"
    assert cert["random_guess_bits"] == pytest.approx(4.0)
    terms = cert["terms"]
    assert cert["bound_bits_per_token"] == pytest.approx(
        terms["empirical_bits"] + terms["complexity_bits"] + terms["subsample_bits"])
    # defaults: a bigram control variate re-checked against the store by verify, and a tenth of the draws as pilot
    assert cert["inputs"]["control_variate_used"]["spec"] == "markov:1" and cert["inputs"]["pilot_draws"] == 40
    assert cert["bounds"]["variance_adaptive"]["sample_size"] == 360
    assert verify(setup / "cert.json") == []
    assert main(["verify", str(setup / "cert.json")]) == 0


def test_verify_fails_on_tampered_certificate_stats_and_store(setup, tmp_path):
    # a tampered number
    cert = json.loads((setup / "cert.json").read_text())
    cert["bound_bits_per_token"] -= 0.5
    bad = setup / "tampered.json"
    bad.write_text(json.dumps(cert))
    problems = verify(bad)
    assert any("bound_bits_per_token" in p for p in problems)
    assert main(["verify", str(bad)]) == 1
    # altered statistics
    copy = tmp_path / "copy"
    shutil.copytree(setup, copy)
    stats = copy / json.loads((copy / "cert.json").read_text())["stats"]["path"]
    z = dict(np.load(stats, allow_pickle=False))
    z["prob"] = np.minimum(1.0, z["prob"] * 1.5)
    np.savez(stats, **z)
    assert any("altered" in p for p in verify(copy / "cert.json", check_model=False))
    stats.unlink()
    assert any("missing" in p for p in verify(copy / "cert.json", check_model=False))


def test_verify_detects_a_changed_store(setup, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(setup, copy)
    cert = json.loads((copy / "cert.json").read_text())
    cert["data"]["path"] = str(copy / "store")
    (copy / "cert.json").write_text(json.dumps(cert))
    assert verify(copy / "cert.json", check_model=False) == []
    tokens = np.fromfile(copy / "store" / "tokens.bin", dtype=np.uint16)
    tokens[5] = (tokens[5] + 1) % 16
    tokens.tofile(copy / "store" / "tokens.bin")
    assert any("no longer hashes" in p for p in verify(copy / "cert.json", check_model=False))


def test_heldout_certificate_costs_no_message_and_refuses_overlap(setup, tmp_path):
    cert = bound(setup / "markov", setup / "store", tmp_path / "held.json", samples=300, heldout=True,
                 progress=False)
    assert cert.kind == "test-set bound" and cert.inputs.heldout
    assert cert.bounds["azuma"].terms.complexity_bits < json.loads(
        (setup / "cert.json").read_text())["terms"]["complexity_bits"]
    assert cert.data["path"].endswith("val")
    # the training store itself as "held-out" data
    with pytest.raises(Exception, match="training store"):
        bound(setup / "markov", setup / "store" / "val", tmp_path / "x.json", samples=10, heldout=True,
              train_data=setup / "store" / "val", progress=False)


def test_resume_gives_identical_certificate(setup, tmp_path):
    args = dict(samples=300, progress=False)
    first = bound(setup / "markov", setup / "store", tmp_path / "a.json", **args)
    again = bound(setup / "markov", setup / "store", tmp_path / "a.json", force=True, **args)
    assert first.bounds == again.bounds


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "--samples"),
    (["--context", "window:5"], "--context"),
    (["--delta", "1.5"], "--delta"),
    (["--samples", "300", "--pilot-draws", "299"], "--pilot-draws"),
])
def test_bad_input_is_one_line_error(setup, tmp_path, capsys, argv, message):
    rc = main(["bound", "--markov", str(setup / "markov"), "--data", str(setup / "store"), "--out",
               str(tmp_path / "c.json"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "c.stats").exists()


def test_vocab_mismatch_is_refused(setup, tmp_path, capsys):
    _store(tmp_path / "other", seed=3, vocab=32)
    rc = main(["bound", "--markov", str(setup / "markov"), "--data", str(tmp_path / "other"), "--out",
               str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "vocabulary" in err


def test_report_writes_table_and_plots(setup, tmp_path):
    rc = main(["report", str(setup / "cert.json"), "--out", str(tmp_path / "r.md")])
    assert rc == 0
    text = (tmp_path / "r.md").read_text()
    assert "| model |" in text and "Azuma bound" in text
    for png in ("r_bound_vs_message.png", "r_terms.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_bad_choice_is_one_line_error(setup, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bound", "--markov", str(setup / "markov"), "--data", str(setup / "store"), "--out",
              str(tmp_path / "c.json"), "--control-variate", "markov:5"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "--control-variate" in err and "markov:5" in err and not (tmp_path / "c.json").exists()
