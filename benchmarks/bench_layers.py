"""Forward+backward time of dense vs structured linear layers, as ratios measured side by side in one run.

    python benchmarks/bench_layers.py [--device cuda] [--widths 256 768 1024] [--tokens 2048] [--repeats 15]
                                      [--shapes square gpt-block]

For each width n, `square`: every layer maps [tokens, n] -> [tokens, n]; `gpt-block`: the four linear layers of
one GPT block of width n (attention n -> 3n and n -> n, MLP n -> 4n and 4n -> n), timed together, i.e. what a
model of width n spends in its linear layers. One step is forward, sum, backward (input and parameter
gradients). The layers are timed in an interleaved round-robin (so machine-load drifts hit all of
them alike); the table shows the median dense step time and, for each kind, the median over rounds of
`dense time / structured time` within the round (> 1 means the structured layer is faster).
Goal (docs/layers.md): monarch:4 at width 1024 >= 2x on CPU. For a square layer 4 blocks do exactly half of dense's
flops (2x is the ceiling); in a GPT block the rectangular MLP and attention layers make it a third (3x). On a shared, loaded CPU use `--threads 1`: multi-threaded
GEMMs stall on descheduled threads and the numbers then measure the scheduler, not the layers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from tokenbound.models.layers import make_linear

KINDS = ("dense", "monarch:4", "kron", "lora:8")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def layer_shapes(width: int, mode: str) -> list[tuple[int, int]]:
    """(in, out) of the layers timed together at this width."""
    if mode == "square":
        return [(width, width)]
    return [(width, 3 * width), (width, width), (width, 4 * width), (4 * width, width)]


def time_layers(width: int, kinds: tuple[str, ...], tokens: int, repeats: int, device: str,
                seed: int = 0, mode: str = "square") -> dict[str, list[float]]:
    """Seconds of one forward+backward step of each kind at this width, one list entry per round-robin round."""
    shapes = layer_shapes(width, mode)
    layers = {k: torch.nn.ModuleList(make_linear(k, i, o, False, seed) for i, o in shapes).to(device) for k in kinds}
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(tokens, i, generator=gen).to(device).requires_grad_(True) for i, _ in shapes]

    def step(stack: torch.nn.ModuleList) -> float:
        for x in xs:
            x.grad = None
        stack.zero_grad(set_to_none=True)
        _sync(device)
        t0 = time.perf_counter()
        sum(layer(x).sum() for layer, x in zip(stack, xs)).backward()
        _sync(device)
        return time.perf_counter() - t0

    for layer in layers.values():  # warm-up (allocator, kernel selection)
        step(layer), step(layer)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for k, layer in layers.items():
            times[k].append(step(layer))
    return times


def paired_speedup(dense: list[float], other: list[float]) -> float:
    """Median over rounds of dense/other, each ratio taken within one round (robust to load drifting)."""
    return statistics.median(d / o for d, o in zip(dense, other))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 768, 1024])
    ap.add_argument("--tokens", type=int, default=8 * 256, help="rows per step (default 8 x 256)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--shapes", nargs="+", default=["square", "gpt-block"], choices=("square", "gpt-block"),
                    help="square n x n layers and/or the four linear layers of a GPT block of width n")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    structured = [k for k in KINDS if k != "dense"]
    print(f"device={args.device} tokens={args.tokens} repeats={args.repeats} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}", file=sys.stderr, flush=True)
    print("| shapes | width | dense fwd+bwd (ms) | " + " | ".join(f"dense/{k}" for k in structured) + " |")
    print("|---|---:|---:|" + "---:|" * len(structured), flush=True)
    for mode in args.shapes:
        for width in args.widths:
            times = time_layers(width, KINDS, args.tokens, args.repeats, args.device, mode=mode)
            ratios = " | ".join(f"{paired_speedup(times['dense'], times[k]):.2f}x" for k in structured)
            print(f"| {mode} | {width} | {statistics.median(times['dense']) * 1e3:.2f} | {ratios} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
