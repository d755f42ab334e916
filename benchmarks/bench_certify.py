"""Cost and tightness of certificates: the seed paper's scheme versus block sampling + variance-adaptive bound.

Measured in one run, same model and data (issue 7):
1. Forward passes (and wall time) needed to bring the subsampling term to <= 0.1 bit at δ = 0.05:
   - paper: token sampler (one forward pass per sampled token, context doc:B), Azuma + Hoeffding;
   - block: block sampler over non-overlapping windows (doc:B/B: one forward pass scores up to B tokens),
     variance-adaptive bound with the betting confidence bound.
   The paper's n follows from Hoeffding's closed form at the certificate's δ share and α; its time per forward
   pass is measured on a pilot sample. The block scheme's n is the smallest n on a doubling grid whose
   certificate (computed on the first n draws of one long i.i.d. sequence) has subsampling term <= 0.1 bit.
2. Empirical bits per token under each scheme's context rule (the price of a shorter average context).
3. Complexity term of the variance-adaptive bound divided by the Azuma complexity term.

Usage (after `tokenbound demo`):  python benchmarks/bench_certify.py --model demo_out/compressed --data demo_out/data
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("demo_out/compressed"))
    ap.add_argument("--data", type=Path, default=Path("demo_out/data"))
    ap.add_argument("--block", type=int, default=None, help="context length B (default: the model's, <= 1024)")
    ap.add_argument("--pilot", type=int, default=500, help="token-sampler draws used to time the paper's scheme")
    ap.add_argument("--max-windows", type=int, default=4096)
    ap.add_argument("--target", type=float, default=0.1, help="subsampling term to reach, bits")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from tokenbound import TokenStore, load
    from tokenbound.bounds.certificate import certify
    from tokenbound.bounds.stats import TokenStats
    from tokenbound.evaluate.bound import message_length
    from tokenbound.evaluate.score import score
    from tokenbound.models.loading import artifact_type

    torch.set_num_threads(2)
    store = TokenStore.open(args.data)
    kind = artifact_type(args.model)
    msg = message_length(args.model, kind)
    model = load(args.model)
    block = args.block or min(int(model.max_context or 1024), 1024)
    common = dict(message_bits=msg.bits, extra_bits=msg.extra_bits, delta=args.delta)

    with tempfile.TemporaryDirectory() as tmp:
        # --- the paper's scheme: token sampler, context doc:B, Azuma + Hoeffding ---------------------------
        t = time.perf_counter()
        pilot = score(model, store, f"doc:{block}", "token", args.pilot, args.seed, out_dir=Path(tmp) / "tok",
                      progress=False, model_sha256=msg.model_sha256)
        sec_per_forward_tok = (time.perf_counter() - t) / args.pilot
        cert_tok = certify(pilot, methods=("azuma",), **common)
        az = cert_tok["bounds"]["azuma"]
        width = az["loss_range_bits"]["range"]
        share = az["delta_shares"]["subsample"]
        # Hoeffding: Δ sqrt(ln(1/δ_s)/(2n)) <= target  <=>  n >= Δ² ln(1/δ_s) / (2 target²)
        n_paper = math.ceil(width ** 2 * math.log(1 / share) / (2 * args.target ** 2))

        # --- block sampling: non-overlapping windows doc:B/B, variance-adaptive + betting ------------------
        t = time.perf_counter()
        blk = score(model, store, f"doc:{block}/{block}", "block", args.max_windows, args.seed,
                    out_dir=Path(tmp) / "blk", progress=True, model_sha256=msg.model_sha256)
        sec_per_forward_blk = (time.perf_counter() - t) / args.max_windows
        n_block, cert_blk, n, terms = None, None, 32, {}
        while n <= args.max_windows:
            keep = blk.draw < n
            sub = TokenStats(blk.positions[keep], blk.prob[keep], blk.rank[keep], blk.entropy_bits[keep],
                             blk.draw[keep], meta=blk.meta)
            cert = certify(sub, methods=("azuma", "variance_adaptive"), subsample_ci="betting", **common)
            terms[n] = cert["bounds"]["variance_adaptive"]["terms"]["subsample_bits"]
            if cert["bounds"]["variance_adaptive"]["terms"]["subsample_bits"] <= args.target:
                n_block, cert_blk = n, cert
                break
            n *= 2
        if cert_blk is None:
            cert_blk = cert
    va, az_blk = cert_blk["bounds"]["variance_adaptive"], cert_blk["bounds"]["azuma"]
    tokens_per_window = len(blk) / blk.num_draws

    print(f"model {args.model} ({msg.label}, {msg.bits:,.0f} bits); data {args.data}: m = {store.num_tokens:,} tokens")
    print(f"context B = {block}; delta = {args.delta}; target subsampling term <= {args.target} bit\n")
    print("| scheme | context rule | forward passes for <= 0.1 bit | est. wall time | empirical bits/token |")
    print("|---|---|---|---|---|")
    print(f"| paper: token sampler + Hoeffding | doc:{block} | {n_paper:,} | {n_paper * sec_per_forward_tok:,.0f} s | "
          f"{az['terms']['empirical_bits']:.3f} |")
    nb = f"{n_block:,}" if n_block else f"> {args.max_windows:,}"
    print(f"| block sampler + variance-adaptive (betting) | doc:{block}/{block} | {nb} | "
          f"{(n_block or args.max_windows) * sec_per_forward_blk:,.0f} s | {va['terms']['empirical_bits']:.3f} |")
    print("\nblock scheme, subsampling term by number of windows: "
          + ", ".join(f"n={k}: {v:.3f}" for k, v in terms.items()))
    if n_block is None:
        # the term shrinks like 1/sqrt(n) once the range term is negligible: extrapolate from the largest n
        last_n, last = max(terms.items())
        est = math.ceil(last_n * (last / args.target) ** 2)
        print(f"target not reached within {args.max_windows} windows; 1/sqrt(n) extrapolation: ~{est:,} windows "
              f"-> paper / block ~ {n_paper / est:.1f}x fewer forward passes")
    if n_block:
        print(f"\nforward passes, paper / block: {n_paper / n_block:.1f}x fewer "
              f"(wall time {n_paper * sec_per_forward_tok / (n_block * sec_per_forward_blk):.1f}x); "
              f"{tokens_per_window:.1f} scored tokens per window")
    print(f"complexity term, variance-adaptive / Azuma (same block statistics): "
          f"{va['terms']['complexity_bits']:.3f} / {az_blk['terms']['complexity_bits']:.3f} = "
          f"{va['terms']['complexity_bits'] / az_blk['terms']['complexity_bits']:.3f}")
    print(f"headline bounds on the block statistics: variance-adaptive {va['bound_bits_per_token']:.3f}, "
          f"Azuma {az_blk['bound_bits_per_token']:.3f} bits/token")


if __name__ == "__main__":
    main()
