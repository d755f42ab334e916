"""Batches, schedule, the training loop, checkpoints with exact resume, and the `train` verb."""
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tokenbound
from tokenbound.cli import main as cli_main
from tokenbound.data.store import TokenStore, write_store
from tokenbound.errors import TimeLimitReached, TokenboundError
from tokenbound.train import checkpoint as ckpt
from tokenbound.train.checkpoint import work_dir_for
from tokenbound.evaluate.loss import model_loss
from tokenbound.evaluate.windows import batch_at, global_batch_starts, windows_at
from tokenbound.train.batches import random_batches
from tokenbound.train.schedule import learning_rate
from tokenbound.train.trainer import VAL_STEP_BASE, train

torch.set_num_threads(1)
V, EOT = 48, 0


def arithmetic_docs(n_docs, seed):
    """Learnable documents: arithmetic progressions mod V-1 (shifted past eot), each ending with eot."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        n, a, step = rng.integers(10, 70), rng.integers(1, V), rng.integers(1, 4)
        docs.append(np.append((a + step * np.arange(n)) % (V - 1) + 1, EOT))
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return np.concatenate(docs), offsets


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "s"
    write_store(root, *arithmetic_docs(250, 0), vocab_size=V, eot=EOT)
    write_store(root / "val", *arithmetic_docs(40, 1), vocab_size=V, eot=EOT)
    return root


# -- batches -----------------------------------------------------------------------------------------------
def test_batches_are_shifted_windows_of_the_extended_stream(store_dir):
    store = TokenStore.open(store_dir)
    ext = np.concatenate([[EOT], np.asarray(store.tokens, dtype=np.int64)])
    starts = np.array([0, 5, len(ext) - 17])
    x, y, seg = windows_at(store, starts, 16, "doc")
    for row, s in enumerate(starts):
        assert x[row].tolist() == ext[s:s + 16].tolist() and y[row].tolist() == ext[s + 1:s + 17].tolist()
    assert x[0, 0] == EOT  # the virtual eot before the stream
    assert torch.equal(seg, (x == EOT).cumsum(-1))
    assert windows_at(store, starts, 16, "stream")[2] is None
    assert global_batch_starts(store.num_tokens, 16, 1000, 0, 0).max() <= len(ext) - 17


def test_batches_are_deterministic_resumable_and_split_disjointly(store_dir):
    store = TokenStore.open(store_dir)
    it = random_batches(store, 16, 4, seed=3)
    first = [next(it) for _ in range(4)]
    resumed = next(random_batches(store, 16, 4, seed=3, start_step=2))
    assert torch.equal(resumed[0], first[2][0]) and torch.equal(resumed[1], first[2][1])
    assert not torch.equal(first[0][0], first[1][0])
    assert not torch.equal(next(random_batches(store, 16, 4, seed=4))[0], first[0][0])
    whole = batch_at(store, 16, 8, seed=3, step=7)
    parts = [batch_at(store, 16, 2, seed=3, step=7, part=p, num_parts=4) for p in range(4)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])


def test_model_loss_is_mean_cross_entropy_in_nats():
    logits = torch.randn(2, 3, 5)
    y = torch.randint(0, 5, (2, 3))
    model = lambda x, segments=None: logits  # noqa: E731
    expected = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()
    assert torch.allclose(model_loss(model, y, y), expected)


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [learning_rate(s, lr=1.0, steps=100, warmup_steps=10, min_lr_ratio=0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[99] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)
    assert lrs[10 + 89 // 2] == pytest.approx(0.55, abs=0.02)


# -- training ----------------------------------------------------------------------------------------------
def _records(run, key):
    return [r[key] for r in ckpt.read_log(run) if key in r]


@pytest.mark.slow  # ~10 s per parameterization on a loaded 2-core machine
@pytest.mark.parametrize("layers,subspace", [("dense", None), ("lora:4", None), ("kron", None),
                                             ("monarch:2", None), ("lora:4", 256)])
def test_every_parameterization_of_tiny_learns(store_dir, tmp_path, layers, subspace):
    out = tmp_path / "run"
    summary = train(store_dir, out, preset="tiny", layers=layers, subspace=subspace, progress=False)
    losses = _records(out, "train_loss_bits")
    assert losses[-1] < losses[0] - 0.5, losses
    assert summary["val_bits_per_token"] < math.log2(V) - 0.5
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "tokenbound.run" and man["coded_params"] == summary["coded_params"] > 0
    assert man["data"]["sha256"] == TokenStore.open(store_dir).sha256
    assert man["final_val_bits_per_token"] == summary["val_bits_per_token"]
    # model.safetensors holds exactly the coded state
    lm = tokenbound.load(out)
    weights = load_file(str(out / "model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == summary["coded_params"] == lm.describe()["coded_params"]
    assert not (tmp_path / "run.partial").exists()


def test_loaded_run_reproduces_the_recorded_validation_loss(store_dir, tmp_path):
    out = tmp_path / "run"
    summary = train(store_dir, out, preset="tiny", steps=20, seed=2, progress=False)
    lm = tokenbound.load(out)
    cfg = json.loads((out / "config.json").read_text())
    val = TokenStore.open(store_dir / "val")
    total = count = 0.0
    for i in range(cfg["train"]["eval_batches"]):
        x, y, seg = batch_at(val, 64, cfg["train"]["batch_size"], 2, VAL_STEP_BASE + i, "doc")
        lp = lm.log_probs(x, seg)
        total -= float(lp.gather(-1, y[..., None]).sum())
        count += y.numel()
    assert total / count / math.log(2) == pytest.approx(summary["val_bits_per_token"], rel=1e-5)


def test_checkpoint_resume_reproduces_the_uninterrupted_run(store_dir, tmp_path, monkeypatch):
    kw = dict(preset="tiny", layers="lora:4", steps=40, seed=1, progress=False)
    full = tmp_path / "full"
    train(store_dir, full, **kw)

    # interrupt the second run right after its first checkpoint (step 30)
    original = ckpt.save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_crash)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(store_dir, broken, **kw)
    monkeypatch.setattr(ckpt, "save_checkpoint", original)
    assert not broken.exists() and (tmp_path / "broken.partial" / "checkpoint").exists()
    with pytest.raises(TokenboundError, match="--resume"):
        train(store_dir, broken, **kw)
    train(store_dir, broken, resume=True, progress=False)

    a, b = load_file(str(full / "model.safetensors")), load_file(str(broken / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = load_file(str(full / "checkpoint" / "optimizer.safetensors"))
    ob = load_file(str(broken / "checkpoint" / "optimizer.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    assert _records(full, "train_loss_bits") == _records(broken, "train_loss_bits")


def test_resume_a_finished_run_with_more_steps(store_dir, tmp_path):
    out = tmp_path / "run"
    train(store_dir, out, preset="tiny", steps=10, progress=False)
    summary = train(store_dir, out, resume=True, steps=20, progress=False)
    assert summary["steps"] == 20 and json.loads((out / "manifest.json").read_text())["steps"] == 20
    assert _records(out, "step")[-1] == 20


def test_cli_train_and_its_errors(store_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(store_dir), "--preset", "tiny", "--steps", "5", "--out", str(out),
            "--context", "stream", "--no-progress"]
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 5 and json.loads((out / "config.json").read_text())["model"]["context"] == "stream"
    assert cli_main(args) == 2 and "already exists" in capsys.readouterr().err
    bad = ["train", "--data", str(store_dir), "--out", str(tmp_path / "x"), "--no-progress"]
    assert cli_main(bad + ["--preset", "huge"]) == 2 and "unknown preset" in capsys.readouterr().err
    assert cli_main(bad) == 2 and "--preset" in capsys.readouterr().err
    assert cli_main(bad + ["--preset", "tiny", "--layers", "sparse"]) == 2 and "--layers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_config_file_and_max_minutes(store_dir, tmp_path):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"model": {"n_layer": 1, "n_head": 1, "n_embd": 16, "block_size": 32,
                                          "positions": "rotary"}, "train": {"steps": 500, "batch_size": 2}}))
    out = tmp_path / "run"
    # A time limit only aborts: the run is checkpointed, not finalized, and resuming finishes the same run.
    with pytest.raises(TimeLimitReached, match="^max_minutes.*--resume"):
        train(store_dir, out, config=conf, max_minutes=1e-6, steps=3, progress=False)
    assert not out.exists() and work_dir_for(out).exists()
    summary = train(store_dir, out, resume=True, progress=False)
    assert summary["steps"] == 3 and summary["completed"]
    assert json.loads((out / "config.json").read_text())["model"]["positions"] == "rotary"
    ref = train(store_dir, tmp_path / "ref", config=conf, steps=3, progress=False)
    assert ref["val_bits_per_token"] == summary["val_bits_per_token"]
    conf.write_text(json.dumps({"model": {"vocab_size": 7}}))
    with pytest.raises(TokenboundError, match="vocab_size"):
        train(store_dir, tmp_path / "r2", config=conf, progress=False)
