"""Training throughput of the `demo` preset per parameterization, measured side by side in one run.

For each parameterization: build the demo model (vocabulary of the store), run a few warm-up optimizer steps,
then time `--steps` steps of the real training step (``trainer.optimizer_step``: batch draw, forward, backward,
clipping, AdamW). Prints tokens/s, coded (trainable) and frozen parameter counts, and tokens/s relative to dense.

    python benchmarks/bench_train.py [--data data/stdlib] [--steps 10] [--threads 1] [--subspace 20000]

Without --data (or if it does not exist), a synthetic store with the stdlib store's vocabulary (8192) is used;
throughput depends on the vocabulary and shapes, not on the token values.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokenbound import configs
from tokenbound.data.store import TokenStore, write_store
from tokenbound.models.gpt import GPTConfig, build_model, parameter_counts
from tokenbound.train import distributed as D
from tokenbound.train.trainer import make_optimizer, optimizer_step

PARAMETERIZATIONS = [("dense", None), ("lora:8", None), ("kron", None), ("monarch:4", None), ("lora:8", "SUB")]


def synthetic_store(root: Path, vocab: int = 8192, tokens: int = 300_000) -> TokenStore:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab, tokens)
    ids[::400] = 0
    ids[-1] = 0
    offsets = np.concatenate([[0], np.nonzero(ids == 0)[0][:-1] + 1])
    return write_store(root, ids, offsets, vocab, 0)


def measure(store: TokenStore, layers: str, subspace: int | None, steps: int, warmup: int, device: str) -> dict:
    preset = configs.preset("demo")
    cfg = GPTConfig.from_dict({**preset["model"], "vocab_size": store.vocab_size, "eot": store.eot,
                               "layers": layers, "subspace_dim": subspace})
    tcfg = configs.TrainConfig.from_dict(preset["train"])
    model = build_model(cfg).to(device).train()
    opt = make_optimizer(model, tcfg, tcfg.lr)
    world = D.World(device=device)
    for step in range(warmup):
        optimizer_step(model, model, opt, store, cfg, tcfg, world, step)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        optimizer_step(model, model, opt, store, cfg, tcfg, world, step)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = steps * tcfg.batch_size * tcfg.grad_accum * cfg.block_size
    return {"parameterization": cfg.parameterization, **parameter_counts(model), "tokens_per_s": tokens / seconds,
            "s_per_step": seconds / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/stdlib")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--subspace", type=int, default=20000, help="subspace dimension of the SubLoRA row")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data)
        store = TokenStore.open(data) if (data / "manifest.json").exists() else synthetic_store(Path(tmp) / "s")
        print(f"store: {store}  threads: {args.threads}  device: {args.device}", flush=True)
        rows = []
        for layers, sub in PARAMETERIZATIONS:
            # progress on stderr as it goes (the table comes at the end, on stdout)
            print(f"bench_train: timing {layers}{f'+subspace:{args.subspace}' if sub else ''} "
                  f"({args.warmup} warmup + {args.steps} steps) ...", file=sys.stderr, flush=True)
            rows.append(measure(store, layers, args.subspace if sub else None, args.steps, args.warmup, args.device))
            print(f"bench_train:   {rows[-1]['tokens_per_s']:,.0f} tokens/s, {rows[-1]['s_per_step']:.3f} s/step",
                  file=sys.stderr, flush=True)
        dense = rows[0]["tokens_per_s"]
        print(f"{'parameterization':<26}{'coded':>12}{'frozen':>12}{'tokens/s':>12}{'s/step':>9}{'vs dense':>10}")
        for r in rows:
            print(f"{r['parameterization']:<26}{r['coded']:>12,}{r['frozen']:>12,}{r['tokens_per_s']:>12,.0f}"
                  f"{r['s_per_step']:>9.3f}{r['tokens_per_s'] / dense:>10.2f}")


if __name__ == "__main__":
    main()
