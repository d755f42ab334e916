"""The frontier study at the tiny scale: results.json structure, verified certificates, what each column is computed
from, the grid, resume, and bad --data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokenbound.cli import main
from tokenbound.data.store import TokenStore
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.verify import verify
from tokenbound.experiments import EXPERIMENTS, run_experiment
from tokenbound.experiments.common import synthetic_store
from tokenbound.experiments.frontier import SETTINGS, Point, grid_points

torch.set_num_threads(1)
_RUN: dict = {}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not _RUN:
        out = tmp_path_factory.mktemp("frontier") / "out"
        _RUN["out"], _RUN["res"] = out, run_experiment("frontier", out, scale="tiny", progress=False)
    return _RUN["out"], _RUN["res"]


def test_results_structure_and_every_certificate_verifies(tiny):
    out, res = tiny
    saved = json.loads((out / "results.json").read_text())
    assert saved["study"] == "frontier" and saved["scale"] == "tiny" and saved["seed"] == 0
    assert saved["verified"] is True and set(saved["verification"]) == {Path(p).name for p in saved["certificates"]}
    s = SETTINGS["tiny"]
    points = grid_points(list(s["corpora"]), s["budgets"], s["grid"])
    assert saved["grid_points"] == [p.name for p in points]
    assert [(r["corpus"], r["steps"]) for r in saved["rows"]] == [(p.corpus, p.steps) for p in points]
    # per point: the SubLoRA model's generalization bound and the dense model's test-set certificate
    assert len(saved["certificates"]) == 2 * len(points) and all(verify(p) == [] for p in saved["certificates"])
    assert saved["plots"] and all(Path(p).exists() and Path(p).suffix == ".png" for p in saved["plots"])
    lines = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert {"corpus", "steps", "certified bits/byte", "dense (uncompressed) held-out bits/byte",
            "price of certification (bits/byte)", "dense test-set certificate bits/byte",
            "price, test-set certificate (bits/byte)", "gzip -9 bits/byte", "xz -9e bits/byte"} <= set(header)
    assert len(lines) == 2 + len(points)


def test_each_row_is_what_its_artifacts_say(tiny):
    out, res = tiny
    s = SETTINGS["tiny"]
    for row in res["rows"]:
        cert = json.loads(Path(row["certificate"]).read_text())
        # the certified number is the certificate's headline per byte; gzip/xz are its reference compressors
        assert row["bits_per_byte"] == pytest.approx(cert["bits_per_byte"])
        assert row["bits_per_byte"] == pytest.approx(row["bound"] / row["train_bytes_per_token"])
        ref = cert["reference_compressors"]
        assert (row["gzip_bits_per_byte"], row["xz_bits_per_byte"]) == (ref["gzip_bits_per_byte"],
                                                                         ref["xz_bits_per_byte"])
        # the demo's sampling recipe at every point: context, sampler, a fixed number of draws, the study seed
        assert (row["context"], row["sampler"], row["sample_size"]) == (s["context"], s["sampler"], s["samples"])
        assert cert["inputs"]["seed"] == 0
        # held-out rates: the val split's bits/token over its bytes/token; the price is the difference
        val = TokenStore.open(row["store"]).val
        assert row["val_bytes_per_token"] == pytest.approx(val.mean_bytes_per_token)
        assert row["dense_heldout_bits_per_byte"] == pytest.approx(row["dense_heldout_bits_per_token"]
                                                                   / val.mean_bytes_per_token)
        assert row["price_of_certification"] == pytest.approx(row["bits_per_byte"]
                                                              - row["dense_heldout_bits_per_byte"])
        # the dense model's test-set certificate: on the val split, no message, the dense Run itself
        dcert = json.loads(Path(row["dense_certificate"]).read_text())
        assert dcert["kind"] == "test-set bound" and dcert["inputs"]["message_bits"] == 0
        assert dcert["inputs"]["sample_size"] == s["heldout_samples"] and dcert["data"]["sha256"] == val.sha256
        assert Path(dcert["model"]["abs_path"]).name == f"dense-{Point(row['corpus'], row['steps']).name}"
        assert row["dense_test_set_bits_per_byte"] == pytest.approx(dcert["bits_per_byte"])
        assert row["price_of_test_set_certification"] == pytest.approx(row["dense_test_set_bits_per_byte"]
                                                                       - row["dense_heldout_bits_per_byte"])
        # both models trained for the point's steps on the same data and seed; only the SubLoRA one is coded
        name = Point(row["corpus"], row["steps"]).name
        sub = json.loads((out / "runs" / f"sublora-{name}" / "manifest.json").read_text())
        dense = json.loads((out / "runs" / f"dense-{name}" / "manifest.json").read_text())
        assert sub["steps"] == dense["steps"] == row["steps"] and sub["seed"] == dense["seed"] == 0
        assert sub["data"]["sha256"] == dense["data"]["sha256"] == cert["data"]["sha256"]
        assert sub["tokens"] == dense["tokens"] == row["training_tokens"]
        assert sub["parameterization"] == f"{s['layers']}+subspace:{s['subspace']}"
        assert dense["parameterization"] == "dense" and dense["coded_params"] > sub["coded_params"]
    # a larger corpus is a larger store (the corpus axis), and the budgets of the first corpus grow
    m = {r["corpus"]: r["num_tokens"] for r in res["rows"]}
    corpora = list(s["corpora"])
    assert m[corpora[0]] < m[corpora[1]]
    assert [r["steps"] for r in res["rows"] if r["corpus"] == corpora[0]] == sorted(s["budgets"])


def test_rerun_recomputes_nothing_and_the_cli_prints_the_table(tiny, capsys):
    out, res = tiny
    before = (out / "table.md").read_text()
    assert main(["experiment", "frontier", "--scale", "tiny", "--out", str(out)]) == 0
    assert "verified: True" in capsys.readouterr().out
    assert (out / "table.md").read_text() == before
    assert json.loads((out / "results.json").read_text())["recomputed"] == []


def test_grid_points():
    spine = grid_points(["a", "b", "c"], [1, 2, 3], "spine")
    assert [(p.corpus, p.steps) for p in spine] == [("a", 1), ("a", 2), ("a", 3), ("b", 2), ("c", 2)]
    full = grid_points(["a", "b"], [1, 2], "full")
    assert [(p.corpus, p.steps) for p in full] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert len({p.name for p in grid_points(["stdlib", "stdlib+tests", "python"], [1, 2], "full")}) == 6
    with pytest.raises(ValueError):
        grid_points(["a"], [1], "diagonal")


def test_data_without_a_tokenizer_or_a_val_split_is_refused(tmp_path):
    assert "frontier" in EXPERIMENTS
    store = synthetic_store(tmp_path / "ids", seed=0)
    with pytest.raises(TokenboundError, match="^data .*tokenizer") as e:
        run_experiment("frontier", tmp_path / "out", scale="tiny", data=store, progress=False)
    assert e.value.cli_message().startswith(f"--data {store}: ")
    assert not (tmp_path / "out" / "runs").exists()
    # a store with a tokenizer but no val/ split has no held-out rate for the uncompressed model
    from tokenbound.data.prepare import prepare

    prepare("stdlib", "byte", tmp_path / "noval", glob="email/_*.py")
    with pytest.raises(TokenboundError, match="^data .*val/ split"):
        run_experiment("frontier", tmp_path / "out2", scale="tiny", data=tmp_path / "noval", progress=False)


@pytest.mark.parametrize("scale", ["small", "paper"])
def test_every_scale_is_the_demo_recipe_with_valid_configs(scale):
    from tokenbound.configs import TrainConfig
    from tokenbound.demo import DemoConfig
    from tokenbound.experiments.common import train_config
    from tokenbound.models.gpt import GPTConfig
    from tokenbound.models.layers import parse_layer_spec

    s, demo = SETTINGS[scale], DemoConfig()
    assert (s["preset"], s["layers"], s["subspace"], s["method"], s["context"], s["sampler"], s["samples"],
            s["tokenizer"]) == (demo.preset, demo.layers, demo.subspace, demo.compress_method, demo.context,
                                demo.sampler, demo.samples, demo.tokenizer)
    assert list(s["corpora"]) == ["stdlib", "stdlib+tests", "python"]
    assert s["budgets"] == sorted(s["budgets"]) and all(isinstance(b, int) and b > 0 for b in s["budgets"])
    parse_layer_spec(s["layers"])
    for b in s["budgets"]:
        cfg = train_config(s["preset"], s["model"], {**s["train"], "steps": b, "eval_interval": b})
        GPTConfig.from_dict({**cfg["model"], "vocab_size": 8192})
        assert TrainConfig.from_dict(cfg["train"]).steps == b
