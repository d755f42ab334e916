"""The main job end to end at a tiny scale: every stage runs, the report lists every certificate, each verifies,
and a rerun resumes (skips finished stages) with an identical table."""
import dataclasses
import shutil
import sysconfig
from pathlib import Path

import pytest

from tokenbound.artifacts import read_json
from tokenbound.demo import DemoConfig, demo
from tokenbound.evaluate.verify import verify


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    src = Path(sysconfig.get_paths()["stdlib"])
    d = tmp_path_factory.mktemp("corpus")
    for name in ("abc.py", "bisect.py", "colorsys.py", "copy.py", "fnmatch.py", "heapq.py", "keyword.py",
                 "numbers.py", "opcode.py", "queue.py", "sched.py", "shlex.py", "stat.py", "string.py"):
        shutil.copy(src / name, d / name)
    return d


def tiny_config(corpus: Path) -> DemoConfig:
    return DemoConfig(corpus=str(corpus), tokenizer="bpe:300", val_fraction=0.2, preset="tiny", subspace=500,
                      train_steps=20, dense_steps=20, dense_steps_grid=(10, 20), context="doc:64/32", samples=40,
                      heldout_samples=20, doc_samples=3, markov_samples=200, markov_orders=(1, 2))


def test_demo_runs_every_stage_and_resumes(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    first = demo(out, cfg=tiny_config(tiny_corpus), progress=False)
    names = ["dense-heldout", "gpt", "gpt-heldout", "markov-1", "markov-2"]
    assert [Path(p).stem for p in first["certificates"]] == names
    for p in first["certificates"]:
        assert verify(Path(p)) == [], p
    table = first["table"]
    assert "GPT tiny SubLoRA" in table and "Markov order 2" in table and "test-set" in table
    # the headline model is the table's first row
    assert "GPT tiny dense (held-out)" in table.splitlines()[2] and "GPT tiny SubLoRA (held-out)" in table
    # the headline is the dense model's test-set certificate (no message charged, its Run never archived);
    # the SubLoRA model's training-set bound follows
    (title, lines), (title2, lines2) = first["sections"]
    assert "dense GPT" in title and lines == first["headline"] and lines[0].startswith("test-set bound")
    assert "message = 0 bits" in "\n".join(lines)
    assert "training tokens" in title2 and lines2[0].startswith("generalization bound")
    dense = read_json(out / "certificates" / "dense-heldout.json")
    assert dense["inputs"]["heldout"] and dense["model"]["message_details"]["measure"] == "none"
    assert dense["inputs"]["extra_bits"] == {"dense_steps_choice": 1.0}  # its step count, one of 2, is paid for
    assert (out / "report_bound_vs_message.png").exists() and (out / "report_terms.png").exists()
    assert set(first["timings"]) >= {"prepare", "train", "compress"}
    again = demo(out, cfg=tiny_config(tiny_corpus), progress=False)
    assert again["timings"] == {} and again["table"] == table  # every stage skipped, same numbers


def test_demo_refuses_a_dense_step_count_its_certificate_does_not_pay_for(tiny_corpus, tmp_path):
    from tokenbound.errors import TokenboundError

    cfg = dataclasses.replace(tiny_config(tiny_corpus), dense_steps=15)
    with pytest.raises(TokenboundError, match="^dense_steps .*one of dense_steps_grid"):
        demo(tmp_path / "d", cfg=cfg, progress=False)
    assert not (tmp_path / "d").exists()


def test_demo_rejects_a_bad_budget(tmp_path):
    from tokenbound.errors import TokenboundError

    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(TokenboundError, match="^minutes: ") as e:  # the parameter; the CLI names the flag
            demo(tmp_path / "d", minutes=bad)
        assert e.value.cli_message().startswith("--minutes: ")
    assert not (tmp_path / "d").exists()


def test_demo_time_limit_aborts_and_resumes_to_the_same_certificate(tiny_corpus, tmp_path):
    """Time never decides what is certified: a spent limit stops the demo; the next run finishes the same run."""
    from tokenbound.errors import TimeLimitReached

    out = tmp_path / "demo"
    cfg = tiny_config(tiny_corpus)
    with pytest.raises(TimeLimitReached, match="^minutes: .*rerun the demo"):
        demo(out, minutes=1e-6, cfg=cfg, progress=False)
    assert cfg == tiny_config(tiny_corpus) and cfg.train_minutes is None  # the limit never edits the caller's config
    assert not (out / "run").exists() and not (out / "certificates").exists()
    resumed = demo(out, cfg=tiny_config(tiny_corpus), progress=False)
    fresh = demo(tmp_path / "fresh", cfg=tiny_config(tiny_corpus), progress=False)
    assert resumed["table"] == fresh["table"]


def test_demo_without_the_dense_model_headlines_the_compressed_one(tiny_corpus, tmp_path):
    cfg = dataclasses.replace(tiny_config(tiny_corpus), dense_steps=0)
    result = demo(tmp_path / "d", cfg=cfg, progress=False)
    assert [Path(p).stem for p in result["certificates"]] == ["gpt", "gpt-heldout", "markov-1", "markov-2"]
    assert not (tmp_path / "d" / "run-dense").exists()
    [(title, lines)] = result["sections"]
    assert "training tokens" in title and lines == result["headline"] and lines[0].startswith("generalization")
