"""DDP: 2 gloo processes under torchrun train the same model as 1 process with 2x gradient accumulation."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tokenbound.data.store import write_store
from tokenbound.models.gpt import build_model, coded_state_dict

V, EOT = 32, 0
MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
TRAIN = {"steps": 12, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "eval_interval": 6, "eval_batches": 2,
         "checkpoint_interval": 6, "log_interval": 3}


def _store(root):
    rng = np.random.default_rng(0)
    docs = [np.append((rng.integers(1, V) + np.arange(rng.integers(8, 40))) % (V - 1) + 1, EOT) for _ in range(120)]
    offsets = np.cumsum([0] + [len(d) for d in docs[:-1]])
    write_store(root, np.concatenate(docs), offsets, V, EOT)
    write_store(root / "val", np.concatenate(docs[:20]), offsets[:20], V, EOT)


def _config(path, grad_accum):
    # dropout on: its noise is seeded per (step, part), so it must agree between the two layouts too
    path.write_text(json.dumps({"model": {**MODEL, "dropout": 0.1}, "train": {**TRAIN, "grad_accum": grad_accum}}))
    return path


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.slow  # two torchrun processes plus a reference run: ~30-50 s on a loaded 2-core machine
def test_two_process_ddp_equals_one_process_with_double_accumulation(tmp_path):
    data = tmp_path / "store"
    _store(data)
    base = ["train", "--data", str(data), "--no-progress", "--seed", "3"]
    one = tmp_path / "one"
    _run([sys.executable, "-m", "tokenbound", *base, "--config", str(_config(tmp_path / "c1.json", 2)),
          "--out", str(one)], tmp_path)
    two = tmp_path / "two"
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "tokenbound", *base, "--config", str(_config(tmp_path / "c2.json", 1)), "--out", str(two)],
               tmp_path)
    summary = json.loads(res.stdout[res.stdout.index("{"):])  # only rank 0 prints
    assert summary["world_size"] == 2
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
    # and training did move the weights (equality is not the trivial one of two untouched models)
    init = coded_state_dict(build_model(json.loads((one / "config.json").read_text())["model"]))
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3
    man1 = json.loads((one / "manifest.json").read_text())
    man2 = json.loads((two / "manifest.json").read_text())
    assert man1["tokens"] == man2["tokens"] and man2["world_size"] == 2
    assert man1["final_val_bits_per_token"] == pytest.approx(man2["final_val_bits_per_token"], abs=1e-4)
    assert not (tmp_path / "two.partial").exists()
