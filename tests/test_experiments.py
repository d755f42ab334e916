"""The paper's studies at the tiny scale: table structure, verified certificates, resume, reproducibility, CLI."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from tokenbound.cli import main
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.verify import verify
from tokenbound.experiments import EXPERIMENTS, run_experiment
from tokenbound.experiments.common import Study, markdown_table, synthetic_store
from tokenbound.experiments.memorization import build_dataset

torch.set_num_threads(1)

# study -> the column titles its table must have (first line of the Markdown table)
EXPECTED_COLUMNS = {
    "markov-vs-context": ["k", "Markov bound", "GPT bound", "GPT message bits", "tighter bound"],
    "compression-sweep": ["model", "message bits", "empirical", "token-level bound", "top-1 err", "top-10 err",
                          "top-100 err", "doc-level bound (prior work)"],
    "memorization": ["model", "acc. random (memorized)", "acc. structured (fresh)", "bound"],
    "pretrained-ptq": ["model", "message bits", "held-out bits/token", "held-out bound IF unseen (not a certificate)",
                       "PROXY token-level bound", "break-even m (tokens)"],
    "scaling": ["n_embd", "coded params", "message bits", "empirical", "bound"],
    "chat-vs-base": ["model", "trained params", "message bits", "empirical", "bound (pretraining data)",
                     "held-out dialogue bits/token"],
    "downstream": ["model", "message bits", "empirical", "bound", "next-line accuracy"],
    "frontier": ["corpus", "steps", "certified bits/byte", "dense (uncompressed) held-out bits/byte",
                 "price of certification", "gzip -9 bits/byte", "xz -9e bits/byte"],
}
EXPECTED_ROWS = {"markov-vs-context": 2, "compression-sweep": 6, "memorization": 3, "pretrained-ptq": 3, "scaling": 2,
                 "chat-vs-base": 3, "downstream": 7,
                 "frontier": 4}
# Each study runs once per test session, on first use (so `-k` selects only what it needs).
_RUNS: dict = {}


class TinyRuns:
    def __init__(self, root):
        self.root = root

    def __getitem__(self, name):
        if name not in _RUNS:
            _RUNS[name] = run_experiment(name, self.root / name, scale="tiny", progress=False)
        return _RUNS[name]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    return root, TinyRuns(root)


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "pretrained-ptq" else n
                                  for n in EXPERIMENTS])
def test_each_study_writes_a_table_plots_and_verified_certificates(tiny_runs, name):
    root, runs = tiny_runs
    res, out = runs[name], root / name
    lines = table_lines((out / "table.md").read_text())
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for col in EXPECTED_COLUMNS[name]:
        assert any(h.startswith(col) for h in header), (col, header)
    assert len(lines) == 2 + EXPECTED_ROWS[name] == 2 + len(res["rows"])
    assert all(len(line.strip("|").split("|")) == len(header) for line in lines)
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed"] == 0 and saved["scale"] == "tiny" and saved["verified"] is True
    assert saved["plots"] and all((out / p).with_suffix(".png").exists() for p in saved["plots"])
    certs = saved["certificates"]
    assert certs and all(p.startswith(str(out / "certificates")) for p in certs)
    for p in certs:
        assert verify(p) == [], p
        assert json.loads(open(p).read())["inputs"]["seed"] == 0


def test_markov_vs_context_compares_the_same_rule_and_positions(tiny_runs):
    root, runs = tiny_runs
    for row in runs["markov-vs-context"]["rows"]:
        m, g = row["markov"], row["gpt"]
        assert m["context"] == g["context"] == f"doc:{row['k']}"
        assert m["num_tokens"] == g["num_tokens"] and m["sample_size"] == g["sample_size"]
        assert row["better"] == ("GPT" if g["bound"] < m["bound"] else "Markov")
    # a higher-order chain codes more counts
    bits = [r["markov_message_bits"] for r in runs["markov-vs-context"]["rows"]]
    assert bits == sorted(bits) and bits[0] < bits[-1]


def test_compression_sweep_subspace_shrinks_the_message_and_has_the_document_baseline(tiny_runs):
    rows = {r["name"]: r for r in tiny_runs[1]["compression-sweep"]["rows"]}
    assert rows["SubLoRA"]["message_bits"] < rows["LoRA"]["message_bits"]
    assert rows["Kronecker+subspace"]["message_bits"] < rows["Kronecker"]["message_bits"]
    assert rows["SubLoRA"]["document_level"] is not None
    assert all(r["document_level"] is None for n, r in rows.items() if n != "SubLoRA")
    assert rows["dense+QAT"]["method"].startswith("qat:")


def test_memorization_levels_shrink_the_message_and_accuracies_are_rates(tiny_runs):
    rows = tiny_runs[1]["memorization"]["rows"]
    quant = [r for r in rows if r["levels"] is not None]
    assert [r["levels"] for r in quant] == sorted([r["levels"] for r in quant], reverse=True)
    assert [r["message_bits"] for r in quant] == sorted([r["message_bits"] for r in quant], reverse=True)
    for r in rows:
        assert 0.0 <= r["random_memorized"] <= 1.0 and 0.0 <= r["structured_fresh"] <= 1.0


def test_memorization_dataset_mixes_repeated_random_and_rule_sequences(tmp_path):
    import numpy as np

    from tokenbound.data.store import TokenStore

    s = {"vocab": 16, "length": 8, "random_pool": 3, "copies": 4, "structured_docs": 10, "fresh_docs": 5,
         "max_step": 2}
    info = build_dataset(tmp_path, s, seed=1)
    store = TokenStore.open(tmp_path / "store")
    docs = np.asarray(store.tokens).reshape(-1, s["length"] + 1)
    assert info["documents"] == len(docs) == 3 * 4 + 10 and (docs[:, -1] == 0).all()
    ev = np.load(tmp_path / "eval.npz", allow_pickle=False)
    for seq in ev["random"]:
        assert (docs[:, :-1] == seq).all(axis=1).sum() >= 4  # each memorized sequence occurs `copies` times
    diffs = np.diff(ev["structured_fresh"] - 1, axis=1) % (s["vocab"] - 1)
    assert (diffs == diffs[:, :1]).all()  # a constant step: a rule, not noise


@pytest.mark.slow
def test_pretrained_ptq_heldout_and_proxy_are_labelled(tiny_runs):
    root, runs = tiny_runs
    rows = runs["pretrained-ptq"]["rows"]
    for r in rows:
        assert r["heldout"]["message_bits"] >= 0 and r["proxy"]["message_bits"] > 0
        held = json.loads(open(r["heldout"]["certificate"]).read())
        assert held["inputs"]["heldout"] is True
    ptq = [r for r in rows if r["model"].startswith("our PTQ")]
    assert ptq[0]["message_bits"] > ptq[-1]["message_bits"]  # 4 bits codes longer than 2 bits
    assert "PROXY" in (root / "pretrained-ptq" / "table.md").read_text()


def test_rerun_resumes_and_reproduces_the_table(tiny_runs, tmp_path):
    root, runs = tiny_runs
    first = runs["scaling"]
    before = (root / "scaling" / "table.md").read_text()
    again = run_experiment("scaling", root / "scaling", scale="tiny", progress=False)  # everything present
    assert (root / "scaling" / "table.md").read_text() == before
    assert again["recomputed"] == [] and again["timings_s"] == first["timings_s"]  # nothing was recomputed
    fresh = run_experiment("scaling", tmp_path / "fresh", scale="tiny", progress=False)
    assert [r["bound"] for r in fresh["rows"]] == [r["bound"] for r in first["rows"]]
    # an interrupted study (a certificate deleted) redoes only that piece
    cert = root / "scaling" / "certificates" / "width-16.json"
    cert.unlink()
    shutil.rmtree(root / "scaling" / "certificates" / "width-16.stats", ignore_errors=True)
    redone = run_experiment("scaling", root / "scaling", scale="tiny", progress=False)
    assert redone["recomputed"] == ["bound width-16"]
    assert (root / "scaling" / "table.md").read_text() == before


def test_cli_runs_a_study_and_rejects_bad_input(tiny_runs, tmp_path, capsys):
    root, runs = tiny_runs
    runs["scaling"]
    assert main(["experiment", "scaling", "--scale", "tiny", "--out", str(root / "scaling")]) == 0
    assert "| n_embd |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["experiment", "no-such-study", "--out", str(tmp_path / "x")])
    assert main(["experiment", "scaling", "--scale", "tiny", "--out", str(tmp_path / "y"),
                 "--data", str(tmp_path / "missing")]) == 2
    assert "--data" in capsys.readouterr().err
    with pytest.raises(TokenboundError, match="^scale: ") as e:  # the parameter; the CLI names the flag
        Study(name="scaling", out=tmp_path / "z", scale="huge")
    assert e.value.cli_message().startswith("--scale: must be one of")
    with pytest.raises(TokenboundError, match="paper scale needs"):
        run_experiment("scaling", tmp_path / "p", scale="paper")
    store = synthetic_store(tmp_path / "store", seed=0)
    with pytest.raises(TokenboundError, match="builds its own synthetic store"):
        run_experiment("memorization", tmp_path / "m", scale="tiny", data=store)


def test_synthetic_store_has_a_disjoint_val_split(tmp_path):
    import numpy as np

    from tokenbound.data.store import TokenStore

    store = TokenStore.open(synthetic_store(tmp_path / "s", seed=3))
    train = {np.asarray(store.document(j)).tobytes() for j in range(store.num_documents)}
    val = store.val
    assert val is not None and val.num_documents > 0
    assert not any(np.asarray(val.document(j)).tobytes() in train for j in range(val.num_documents))


def test_markdown_table_formats_rows():
    text = markdown_table([{"a": 1234567.0, "b": None, "c": True, "d": 0.5}],
                          [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")])
    assert text.splitlines() == ["| A | B | C | D |", "|---|---|---|---|", "| 1,234,567 | – | yes | 0.500 |"]


def test_markov_orders_beyond_the_key_range_are_skipped(tmp_path):
    from tokenbound.data.store import write_store
    from tokenbound.experiments.markov_context import markov_supported

    import numpy as np

    big = write_store(tmp_path / "big", np.array([1, 2, 0]), np.array([0]), vocab_size=8192, eot=0)
    assert markov_supported(big.path, 4) and not markov_supported(big.path, 5)
    assert markov_supported(synthetic_store(tmp_path / "small", seed=0), 8)


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_scale_defines_valid_model_and_training_configs(scale):
    from tokenbound.configs import TrainConfig
    from tokenbound.experiments import compression_sweep, markov_context, memorization, pretrained_ptq, scaling
    from tokenbound.experiments.common import train_config
    from tokenbound.models.gpt import GPTConfig
    from tokenbound.models.layers import parse_layer_spec

    def check(cfg, layers=None):
        GPTConfig.from_dict({**cfg["model"], "vocab_size": 50257, "layers": layers or "dense"})
        TrainConfig.from_dict(cfg["train"])
        if layers:
            parse_layer_spec(layers)

    s = markov_context.SETTINGS[scale]
    for k in s["orders"]:
        check(markov_context.gpt_config(s, k))
    s = compression_sweep.SETTINGS[scale]
    for _, layers, _, method in compression_sweep.configs_for(s):
        check(train_config(s["preset"], s["model"], s["train"]), layers)
        assert method.startswith(("qat:", "quant:"))
    s = scaling.SETTINGS[scale]
    for width in s["widths"]:
        check(train_config(s["preset"], {**s["model"], "n_embd": width}, s["train"]))
    s = memorization.SETTINGS[scale]
    check(train_config("tiny", s["model"], s["train"]))
    assert sorted(memorization.SETTINGS[scale]["levels"], reverse=True) == memorization.SETTINGS[scale]["levels"]
    from tokenbound.coding.ptq import ptq_params

    for bits in pretrained_ptq.SETTINGS[scale]["bits"]:
        spec = dict(kv.split("=") for kv in f"bits={bits},{pretrained_ptq.SETTINGS[scale]['ptq']}".split(","))
        ptq_params({k: (v if k == "algo" else int(v)) for k, v in spec.items()})
