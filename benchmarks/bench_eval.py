"""Scoring throughput: token sampler (one forward pass per sampled position, the seed paper's way) vs strided
block scoring (one forward pass per window, s positions scored each), same model and data, one run.

Prints, for each configuration, scored tokens per second, forward passes per scored token (one forward pass =
one model input row = one context; `calls` counts batched model calls of up to --batch-size rows), and model input
tokens per scored token (padding included), then the ratios block / token measured side by side.

    python benchmarks/bench_eval.py [--block 256] [--samples 256] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokenbound.data.store import write_store
from tokenbound.evaluate.score import score
from tokenbound.models.base import LanguageModel


class Counted(LanguageModel):
    """Counts forward passes and input tokens of the wrapped model."""

    def __init__(self, inner: LanguageModel):
        self.inner, self.vocab_size, self.max_context = inner, inner.vocab_size, inner.max_context
        self.calls = self.rows = self.input_tokens = 0

    def log_probs(self, ids, segments=None):
        self.calls += 1
        self.rows += int(ids.shape[0])
        self.input_tokens += int(ids.numel())
        return self.inner.log_probs(ids, segments)

    def describe(self):
        return self.inner.describe()

    def to(self, device):
        self.inner = self.inner.to(device)
        return self


def make_model(vocab: int, block: int, device: str) -> LanguageModel:
    from tokenbound.models.gpt import GPTConfig, GPTLanguageModel, build_model

    cfg = GPTConfig(vocab_size=vocab, block_size=block, n_layer=4, n_head=4, n_embd=128, seed=0)
    return GPTLanguageModel(build_model(cfg), cfg).to(device)


def make_store(root: Path, vocab: int, tokens: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 2000, size=tokens // 500)  # documents shorter and longer than the block
    lengths = lengths[np.cumsum(lengths) <= tokens]
    stream = rng.integers(1, vocab, size=int(lengths.sum()))
    ends = np.cumsum(lengths) - 1
    stream[ends] = 0  # every document ends with eot (id 0)
    return write_store(root / "store", stream, np.concatenate([[0], ends[:-1] + 1]), vocab, 0)


def run(model, store, rule, sampler, n, batch_size, device, out: Path) -> dict:
    counted = Counted(model)
    t0 = time.perf_counter()
    stats = score(counted, store, rule, sampler, n, seed=0, out_dir=out, batch_size=batch_size, device=device,
                  progress=False, shard_size=max(1, n))
    dt = time.perf_counter() - t0
    k = len(stats)
    return {"rule": rule, "sampler": sampler, "scored": k, "seconds": dt, "tok_per_s": k / dt,
            "rows_per_tok": counted.rows / k, "calls_per_tok": counted.calls / k, "rows_tok_per_tok": counted.input_tokens / k}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--samples", type=int, default=256, help="token-sampler positions")
    ap.add_argument("--windows", type=int, default=32, help="block-sampler windows")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    B = args.block
    model = make_model(args.vocab, B, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = make_store(root, args.vocab, 400_000)
        configs = [(f"doc:{B}", "token", args.samples),
                   (f"doc:{B}/{B // 2}", "block", args.windows),
                   (f"doc:{B}/{B}", "block", args.windows)]
        run(model, store, f"doc:{B}", "token", 8, args.batch_size, args.device, root / "warmup")
        results = []
        for i, (r, s, n) in enumerate(configs):  # progress on stderr as it goes; the table comes at the end
            print(f"bench_eval: scoring {n} draws, sampler {s}, rule {r} ...", file=sys.stderr, flush=True)
            results.append(run(model, store, r, s, n, args.batch_size, args.device, root / f"o{i}"))
            print(f"bench_eval:   {results[-1]['scored']} tokens in {results[-1]['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    dev = args.device if args.device != "cpu" else f"cpu ({args.threads} thread{'s' if args.threads > 1 else ''})"
    print(f"# bench_eval: GPT 4x128, vocab {args.vocab}, block {B}, batch {args.batch_size}, {dev}")
    print(f"{'rule':>16} {'sampler':>8} {'scored':>7} {'sec':>7} {'tok/s':>9} {'fwd/tok':>8} {'calls/tok':>9} "
          f"{'in-tok/tok':>10}")
    for r in results:
        print(f"{r['rule']:>16} {r['sampler']:>8} {r['scored']:>7} {r['seconds']:>7.2f} {r['tok_per_s']:>9.1f} "
              f"{r['rows_per_tok']:>8.4f} {r['calls_per_tok']:>9.4f} {r['rows_tok_per_tok']:>10.1f}")
    base = results[0]
    for r in results[1:]:
        print(f"ratio {r['rule']} block / {base['rule']} token: scored tok/s x{r['tok_per_s'] / base['tok_per_s']:.1f}, "
              f"forward passes per scored token x{r['rows_per_tok'] / base['rows_per_tok']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
