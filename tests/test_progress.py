"""The shared progress helper: plain periodic lines without a terminal, never a change in results."""
from __future__ import annotations

import io

import numpy as np
import pytest

from tokenbound.progress import Progress, track


def test_plain_lines_without_a_terminal():
    f = io.StringIO()
    with Progress(96_000, "score block doc:128/64", "tok", file=f, interval=0) as bar:
        bar.update(1_200)
        bar.set_postfix(loss="3.1")
        bar.update(94_800)
    lines = f.getvalue().splitlines()
    assert lines[0].startswith("score block doc:128/64: 1,200/96,000 tok (1.2%) ")
    assert lines[0].endswith(" s")
    assert lines[-1].startswith("score block doc:128/64: 96,000/96,000 tok (100.0%) ") and "loss=3.1" in lines[-1]
    assert len(lines) == 2  # the final count was already shown: close() adds no duplicate


def test_lines_are_spaced_by_the_interval_and_quiet_loops_stay_quiet():
    f = io.StringIO()
    with Progress(10, "work", "it", file=f, interval=3600) as bar:
        for _ in range(10):
            bar.update()
    assert f.getvalue() == ""  # a loop shorter than the interval prints nothing
    f = io.StringIO()
    with Progress(None, "work", "it", file=f, enabled=False, interval=0) as bar:
        bar.update(5)
    assert f.getvalue() == ""


def test_interval_from_the_environment(monkeypatch):
    f = io.StringIO()
    monkeypatch.setenv("TOKENBOUND_PROGRESS_SECONDS", "0")
    assert list(track(range(3), "t", "step", file=f)) == [0, 1, 2]
    assert f.getvalue().splitlines()[-1].startswith("t: 3/3 step (100.0%)")


def test_train_reports_progress_to_a_log_and_results_do_not_depend_on_it(tmp_path, monkeypatch, capsys):
    from tokenbound.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "ids.npy", rng.integers(1, 20, size=3000))
    assert main(["prepare", "--corpus", f"tokens:{tmp_path / 'ids.npy'}", "--vocab-size", "20", "--eot", "0",
                 "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("TOKENBOUND_PROGRESS_SECONDS", "0")
    assert main(["train", "--data", str(tmp_path / "s"), "--preset", "tiny", "--steps", "3", "--out",
                 str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "train: 1/3 steps (33.3%)" in err and "train: 3/3 steps (100.0%)" in err
    monkeypatch.setenv("TOKENBOUND_PROGRESS_SECONDS", "3600")
    assert main(["train", "--data", str(tmp_path / "s"), "--preset", "tiny", "--steps", "3", "--out",
                 str(tmp_path / "b"), "--no-progress"]) == 0
    assert "train:" not in capsys.readouterr().err
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_score_says_when_it_resumes_from_existing_shards(tmp_path, monkeypatch, capsys):
    from tokenbound.data.store import write_store
    from tokenbound.evaluate.score import score
    from tokenbound.models.markov import MarkovModel

    tokens = np.array([1, 2, 3, 0, 2, 3, 1, 0] * 20, dtype=np.int64)
    store = write_store(tmp_path / "s", tokens, np.arange(0, tokens.size, 4), 4, 0)
    model = MarkovModel.fit(np.asarray(store.tokens), store.doc_offsets, 4, 0, order=1)
    first = score(model, store, "doc:4", "token", 30, 1, out_dir=tmp_path / "o", shard_size=10, progress=False)
    assert "resuming" not in capsys.readouterr().err
    monkeypatch.setenv("TOKENBOUND_PROGRESS_SECONDS", "3600")
    again = score(model, store, "doc:4", "token", 30, 1, out_dir=tmp_path / "o", shard_size=10, progress=True)
    assert "resuming: 3 of 3 shards already scored" in capsys.readouterr().err
    assert np.array_equal(first.prob, again.prob)


def test_benchmarks_print_as_they_go():
    """A benchmark whose output goes to a log says what it is timing before each measurement (stderr)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_eval.py"
    r = subprocess.run([sys.executable, str(bench), "--block", "16", "--samples", "8", "--windows", "2",
                        "--vocab", "64"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("bench_eval: scoring") == 3 and "ratio doc:16/8 block" in r.stdout
