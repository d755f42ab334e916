"""Held-out (test-set) certificates need evidence that the model never saw the data (docs/theory.md §10), and the
certificate records what the data side rests on: how independence was shown, and what the tokenizer was fitted on."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tokenbound.bounds.schema import Certificate
from tokenbound.cli import main
from tokenbound.data.store import TokenStore, write_store
from tokenbound.evaluate.bound import bound, summary_lines
from tokenbound.evaluate.verify import verify
from tokenbound.models.markov_fit import fit_store
from tokenbound.report.tables import certificate_row

VOCAB = 16


def _docs(seed, num_docs):
    rng = np.random.default_rng(seed)
    return [np.array([1 + (int(rng.integers(1, VOCAB)) + 3 * k + int(rng.integers(0, 2))) % (VOCAB - 1)
                      for k in range(int(rng.integers(8, 40)))] + [0]) for _ in range(num_docs)]


def _write(path, docs):
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return write_store(path, np.concatenate(docs), offsets, VOCAB, 0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """`flat`: a store without val/; `split`: one with val/; a tiny Run and its CompressedModel on each."""
    from tokenbound.train.trainer import train

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("heldout")
    train_docs = _docs(0, 80)
    _write(d / "flat", train_docs)
    _write(d / "split", train_docs)
    _write(d / "split" / "val", _docs(1, 20))
    _write(d / "other", _docs(2, 20))                      # disjoint documents, same tokenization
    _write(d / "overlap", _docs(3, 10) + train_docs[:2])    # two training documents inside
    for name in ("flat", "split"):
        train(d / name, d / f"run-{name}", preset="tiny", steps=3, seed=0, progress=False)
        assert main(["compress", "--run", str(d / f"run-{name}"), "--method", "quant:levels=5",
                     "--out", str(d / f"comp-{name}")]) == 0
    fit_store(d / "flat", 1, d / "markov")
    return d


def _bound_cli(capsys, *argv):
    code = main(["bound", *map(str, argv), "--samples", "60", "--context", "doc:16"])
    out, err = capsys.readouterr()
    return code, out, err


def test_heldout_on_the_training_store_itself_is_refused(world, tmp_path, capsys):
    out = tmp_path / "c.json"
    for flag, model in (("--compressed", "comp-flat"), ("--run", "run-flat"), ("--markov", "markov")):
        code, _, err = _bound_cli(capsys, flag, world / model, "--data", world / "flat", "--heldout", "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "own training store" in err and "Traceback" not in err
        assert not out.exists() and not (tmp_path / "c.stats").exists()


def test_heldout_on_the_val_split_of_the_training_store_is_accepted(world, tmp_path, capsys):
    code, out, _ = _bound_cli(capsys, "--compressed", world / "comp-split", "--data", world / "split", "--heldout",
                              "--out", tmp_path / "c.json")
    assert code == 0 and "CONDITIONAL" not in out
    cert = json.loads((tmp_path / "c.json").read_text())
    ind = cert["data"]["heldout_independence"]
    assert ind["established"] == "checked" and ind["assumption"] is None
    assert [c["role"] for c in ind["checks"]] == ["training"]
    assert ind["checks"][0]["sha256"] == TokenStore.open(world / "split").sha256
    assert "val split" in ind["checks"][0]["how"] and ind["checks"][0]["documents_checked"] == 20
    assert any(a.startswith("checked:") and "val split" in a for a in cert["assumptions"])
    assert verify(tmp_path / "c.json") == []


def test_heldout_needs_documents_disjoint_from_the_training_store(world, tmp_path):
    cert = bound(world / "markov", world / "other", tmp_path / "o.json", samples=60, heldout=True, progress=False)
    check = cert.data["heldout_independence"]["checks"][0]
    assert check["how"] == "no document in common with the store" and check["documents_checked"] == 20
    with pytest.raises(Exception, match="shares 2 document"):
        bound(world / "markov", world / "overlap", tmp_path / "x.json", samples=60, heldout=True, progress=False)
    assert not (tmp_path / "x.json").exists()


def test_training_store_that_cannot_be_found_is_refused(world, tmp_path):
    shutil.copytree(world / "flat", tmp_path / "flat")
    fit_store(tmp_path / "flat", 1, tmp_path / "markov")
    shutil.rmtree(tmp_path / "flat")   # the store the model records is gone (a copy is at world/flat)
    with pytest.raises(Exception, match="not found; pass --train-data"):
        bound(tmp_path / "markov", world / "other", tmp_path / "x.json", samples=60, heldout=True, progress=False)
    cert = bound(tmp_path / "markov", world / "other", tmp_path / "y.json", samples=60, heldout=True,
                 train_data=world / "flat", progress=False)
    assert cert.data["heldout_independence"]["established"] == "checked"
    with pytest.raises(Exception, match="not the model's training store"):
        bound(tmp_path / "markov", world / "other", tmp_path / "z.json", samples=60, heldout=True,
              train_data=world / "split" / "val", progress=False)


def test_assume_unseen_is_refused_for_a_model_that_records_its_training_data(world, tmp_path, capsys):
    code, _, err = _bound_cli(capsys, "--run", world / "run-split", "--data", world / "split", "--heldout",
                              "--assume-unseen", "--out", tmp_path / "c.json")
    assert code == 2 and "--assume-unseen" in err and len(err.strip().splitlines()) == 1
    code, _, err = _bound_cli(capsys, "--markov", world / "markov", "--data", world / "flat", "--assume-unseen",
                              "--out", tmp_path / "c.json")
    assert code == 2 and "only with --heldout" in err


def test_external_model_needs_the_assumption_and_the_certificate_records_it(world, tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=32)
                     ).save_pretrained(hf, safe_serialization=True)
    capsys.readouterr()
    out = tmp_path / "c.json"
    code, _, err = _bound_cli(capsys, "--hf", hf, "--data", world / "split", "--heldout", "--out", out)
    assert code == 2 and "--assume-unseen" in err and "training data is unknown" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, printed, err = _bound_cli(capsys, "--hf", hf, "--data", world / "split", "--heldout", "--assume-unseen",
                                    "--out", out)
    assert code == 0, err
    cert = json.loads(out.read_text())
    ind = cert["data"]["heldout_independence"]
    assert ind["established"] == "assumed" and ind["assumption"] == "the model was not trained on this data"
    assert any(a.startswith("assumed: the model was not trained on this data") for a in cert["assumptions"])
    head = summary_lines(cert)[0]
    assert head.startswith("test-set bound CONDITIONAL on the assumption that the model was not trained on this data")
    assert head in printed
    assert "assum" in certificate_row(out, Certificate.from_json(cert))["kind"]
    assert verify(out, check_model=False) == []


def test_charged_tokenizer_bits_appear_in_the_certificate(tmp_path):
    from tokenbound.data.prepare import prepare

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"f{i:02d}.py").write_text(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * (1 + i % 4))
    charged, _ = prepare(str(corpus), "bpe:300", tmp_path / "charged", tokenizer_fit="train-charged",
                         val_fraction=0.2)
    split, _ = prepare(str(corpus), "bpe:300", tmp_path / "split", val_fraction=0.2, tokenizer_fraction=0.2)
    bits = charged.manifest["tokenizer_fit"]["code_bits"]
    for name in ("charged", "split"):
        fit_store(tmp_path / name, 1, tmp_path / f"m-{name}")
    cert = bound(tmp_path / "m-charged", tmp_path / "charged", tmp_path / "a.json", samples=60, progress=False)
    assert cert.inputs.extra_bits["tokenizer"] == bits > 0
    for method in cert.bounds.values():
        assert method.extra_bits["tokenizer"] == bits
    assert cert.data["tokenizer_fit"]["mode"] == "train-charged"
    assert any(a.startswith("charged:") and f"{bits:.0f} bits" in a for a in cert.extra["assumptions"])
    free = bound(tmp_path / "m-split", tmp_path / "split", tmp_path / "b.json", samples=60, progress=False)
    assert "tokenizer" not in free.inputs.extra_bits
    assert free.data["tokenizer_fit"]["mode"] == "tokenizer-split"
    assert any("tokenizer split" in a for a in free.extra["assumptions"])
    # the tokenizer was fitted before the held-out documents were seen: nothing to charge there
    held = bound(tmp_path / "m-charged", tmp_path / "charged", tmp_path / "h.json", samples=60, heldout=True,
                 progress=False)
    assert "tokenizer" not in held.inputs.extra_bits
    assert verify(tmp_path / "a.json") == []


def test_older_compressed_model_is_checked_through_its_source_run(world, tmp_path):
    from tokenbound.artifacts import MANIFEST, write_json

    old = tmp_path / "old"
    shutil.copytree(world / "comp-flat", old)
    man = json.loads((old / MANIFEST).read_text())
    assert man["training_stores"][0]["sha256"] == TokenStore.open(world / "flat").sha256
    del man["training_stores"]  # as written before CompressedModels recorded their training stores
    write_json(old / MANIFEST, man)
    with pytest.raises(Exception, match="own training store"):
        bound(old, world / "flat", tmp_path / "x.json", samples=60, heldout=True, progress=False)
    cert = bound(old, world / "other", tmp_path / "o.json", samples=60, heldout=True, progress=False)
    assert cert.data["heldout_independence"]["checks"][0]["role"] == "training"
    man["source"] = {**man["source"], "path": "../nowhere", "abs_path": str(tmp_path / "nowhere")}
    write_json(old / MANIFEST, man)
    with pytest.raises(Exception, match="source Run .* not found; pass --assume-unseen"):
        bound(old, world / "other", tmp_path / "y.json", samples=60, heldout=True, progress=False)


def test_heldout_run_is_not_archived_and_a_forged_training_claim_fails_verify(world, tmp_path, capsys):
    """A test-set certificate charges no message, so an uncompressed Run is identified by the hash of its weights
    instead of being archived; the certificate verifies, and the same record on a training-set claim does not."""
    from tokenbound.coding.hashing import state_sha256
    from tokenbound.models.decoders import model_state
    from tokenbound.models.loading import load

    code, out, _ = _bound_cli(capsys, "--run", world / "run-split", "--data", world / "split", "--heldout",
                              "--out", tmp_path / "r.json")
    assert code == 0 and "message = 0 bits" in out
    cert = json.loads((tmp_path / "r.json").read_text())
    assert cert["inputs"]["message_bits"] == 0 and cert["model"]["message_details"] == {"measure": "none"}
    assert cert["model"]["sha256"] == state_sha256(model_state(load(world / "run-split")))
    assert verify(tmp_path / "r.json") == []
    forged = dict(cert, inputs={**cert["inputs"], "heldout": False})
    (tmp_path / "f.json").write_text(json.dumps(forged))
    problems = verify(tmp_path / "f.json")
    assert any("charges no message" in p for p in problems), problems
