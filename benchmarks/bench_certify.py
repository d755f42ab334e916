"""Cost and tightness of certificates: the seed paper's scheme versus block sampling + variance-adaptive bound.

Measured in one run, same model and data (docs/theory.md §6 for the variance-adaptive bound):
1. Forward passes (and wall time) needed to bring the subsampling term to <= 0.1 bit at δ = 0.05:
   - paper: token sampler (one forward pass per sampled token, context doc:B), Hoeffding, n from the closed form
     Δ² ln(1/δ2)/(2·0.1²) at Azuma's α. Two δ2: divided by the 8 α values (α chosen on the sample, as a
     certificate must pay) and undivided (α fixed in advance, e.g. on a pilot — the same footing as the block
     scheme below). Time per forward pass is measured on a pilot sample.
   - block: block sampler over non-overlapping windows (doc:B/B: one forward pass scores up to B tokens), the
     variance-adaptive certificate alone with the betting bound, a bigram control variate and a pilot tenth of
     the draws choosing α and λ; n is the smallest on a grid whose certificate (on the first n draws of one
     long i.i.d. sequence) has subsampling term <= 0.1 bit.
   - also the plain subsampling comparison: the betting bound (with the control) on the mean loss alone at the
     paper's α and δ2, i.e. the same quantity the paper's Hoeffding term bounds.
2. Empirical bits per token under each scheme's context rule (the price of a shorter average context).
3. Complexity term of the variance-adaptive bound divided by Azuma's, at each method's own α and at equal α.

Usage (after `tokenbound demo`):  python benchmarks/bench_certify.py --model demo_out/compressed --data demo_out/data
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path


def n_grid(lo: int, hi: int, step: float = 1.15) -> list[int]:
    out, n = [], float(lo)
    while n < hi:
        out.append(int(n))
        n *= step
    return out + [hi]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("demo_out/compressed"))
    ap.add_argument("--data", type=Path, default=Path("demo_out/data"))
    ap.add_argument("--block", type=int, default=None, help="context length B (default: the model's, <= 1024)")
    ap.add_argument("--pilot", type=int, default=2000,
                    help="token-sampler draws used to time the paper's scheme and estimate its empirical loss")
    ap.add_argument("--max-windows", type=int, default=4096)
    ap.add_argument("--target", type=float, default=0.1, help="subsampling term to reach, bits")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch

    from tokenbound import TokenStore, load
    from tokenbound.bounds.certificate import certify as certify_typed
    from tokenbound.bounds.schema import CertifyInputs

    def certify(stats, **inputs):  # the certificate's JSON form, which this script reads
        return certify_typed(stats, CertifyInputs(**inputs)).to_json()
    from tokenbound.bounds.smoothing import loss_range_bits, smoothed_loss_bits
    from tokenbound.bounds.subsampling import draw_means, upper_mean
    from tokenbound.evaluate.bound import message_length
    from tokenbound.evaluate.control import attach_control
    from tokenbound.evaluate.score import score
    from tokenbound.models.loading import artifact_type

    torch.set_num_threads(2)
    store = TokenStore.open(args.data)
    kind = artifact_type(args.model)
    msg = message_length(args.model, kind)
    model = load(args.model)
    block = args.block or min(int(model.max_context or 1024), 1024)
    common = dict(message_bits=msg.bits, extra_bits=msg.extra_bits, delta=args.delta, top_k=())

    with tempfile.TemporaryDirectory() as tmp:
        # --- the paper's scheme: token sampler, context doc:B, Azuma + Hoeffding ---------------------------
        t = time.perf_counter()
        print(f"bench_certify: scoring {args.pilot} token draws under doc:{block} ...", file=sys.stderr, flush=True)
        pilot = score(model, store, f"doc:{block}", "token", args.pilot, args.seed, out_dir=Path(tmp) / "tok",
                      progress=True, model_sha256=msg.model_sha256)
        sec_per_forward_tok = (time.perf_counter() - t) / args.pilot
        az = certify(pilot, methods=("azuma",), **common)["bounds"]["azuma"]
        width, share_union = az["loss_range_bits"]["range"], az["delta_shares"]["subsample"]
        share_fixed = share_union * az["subsample_choices"]
        # Hoeffding: Δ sqrt(ln(1/δ2)/(2n)) <= target  <=>  n >= Δ² ln(1/δ2) / (2 target²)
        n_paper = {name: math.ceil(width ** 2 * math.log(1 / s) / (2 * args.target ** 2))
                   for name, s in (("alpha chosen on the sample", share_union), ("alpha fixed in advance", share_fixed))}

        # --- block sampling: non-overlapping windows doc:B/B -------------------------------------------------
        t = time.perf_counter()
        print(f"bench_certify: scoring {args.max_windows} windows under doc:{block}/{block} ...", file=sys.stderr,
              flush=True)
        blk = score(model, store, f"doc:{block}/{block}", "block", args.max_windows, args.seed,
                    out_dir=Path(tmp) / "blk", progress=True, model_sha256=msg.model_sha256)
        sec_per_forward_blk = (time.perf_counter() - t) / args.max_windows
        blk = attach_control(blk, store, "markov:1")

    # (a) the variance-adaptive certificate, pilot-selected, with the control variate
    print("bench_certify: certifying on growing numbers of windows ...", file=sys.stderr, flush=True)
    terms, n_block, cert_blk = {}, None, None
    for n in n_grid(200, args.max_windows):
        cert = certify(blk.draws_between(0, n), methods=("variance_adaptive",), subsample_ci="betting",
                       pilot_draws=n // 10, **common)
        terms[n] = cert["bounds"]["variance_adaptive"]["terms"]["subsample_bits"]
        if n_block is None and terms[n] <= args.target:
            n_block, cert_blk = n, cert
    # (b) the loss mean alone, at the paper's α and δ2 (betting + control vs Hoeffding)
    alpha = az["alpha"]
    l_min, l_max, _ = loss_range_bits(np.array([alpha]), int(blk.meta["vocab_size"]))
    window_loss = draw_means(smoothed_loss_bits(blk.prob, np.array([alpha]), int(blk.meta["vocab_size"])),
                             blk.draw, blk.num_draws)[0]
    cv = blk.control_variate()
    loss_only = {}
    for name, share in (("alpha chosen on the sample", share_union), ("alpha fixed in advance", share_fixed)):
        for n in n_grid(50, args.max_windows):
            sub_cv = dataclasses.replace(cv, draws=cv.draws[:n])
            mean, up = upper_mean(window_loss[None, :n], l_min, l_max, share, "betting", control=sub_cv)
            if up[0] - mean[0] <= args.target:
                loss_only[name] = n
                break
    # (c) complexity terms on all block draws, both methods
    full = certify(blk, subsample_ci="betting", pilot_draws=blk.num_draws // 10, **common)
    va, azb = full["bounds"]["variance_adaptive"], full["bounds"]["azuma"]
    same_alpha = certify(blk, subsample_ci="betting", alpha_grid=[va["alpha"]], **common)["bounds"]

    print(f"model {args.model} ({msg.label}, {msg.bits:,.0f} bits); data {args.data}: m = {store.num_tokens:,} tokens")
    print(f"context B = {block}; delta = {args.delta}; target subsampling term <= {args.target} bit; "
          f"{len(blk) / blk.num_draws:.1f} scored tokens per window\n")
    print("| scheme | context rule | forward passes for <= 0.1 bit | est. wall time | empirical bits/token |")
    print("|---|---|---|---|---|")
    for name, n in n_paper.items():
        print(f"| paper: token sampler + Hoeffding ({name}) | doc:{block} | {n:,} | {n * sec_per_forward_tok:,.0f} s | "
              f"{az['terms']['empirical_bits']:.3f} |")
    nb = f"{n_block:,}" if n_block else f"> {args.max_windows:,}"
    emp = (cert_blk or full)["bounds"]["variance_adaptive"]["terms"]["empirical_bits"]
    print(f"| block + variance-adaptive certificate (betting, bigram control, pilot 10 %) | doc:{block}/{block} | {nb} | "
          f"{(n_block or args.max_windows) * sec_per_forward_blk:,.0f} s | {emp:.3f} |")
    for name, n in loss_only.items():
        print(f"| block + betting with bigram control, mean loss at the paper's alpha ({name}) | doc:{block}/{block} | "
              f"{n:,} | {n * sec_per_forward_blk:,.0f} s | {window_loss.mean():.3f} |")
    tok_loss = smoothed_loss_bits(pilot.prob, np.array([alpha]), int(blk.meta["vocab_size"]))[0]
    print(f"\nempirical bits/token at the paper's alpha = {alpha} (± standard error): token sampler, doc:{block} "
          f"{tok_loss.mean():.3f} ± {tok_loss.std(ddof=1) / math.sqrt(tok_loss.size):.3f} ({tok_loss.size:,} tokens); "
          f"block sampler, doc:{block}/{block} {window_loss.mean():.3f} ± "
          f"{window_loss.std(ddof=1) / math.sqrt(window_loss.size):.3f} ({window_loss.size:,} windows)")
    print("\nvariance-adaptive certificate, subsampling term by number of windows: "
          + ", ".join(f"{k}: {v:.3f}" for k, v in terms.items()))
    if n_block:
        print("\nforward passes, paper / block certificate: "
              + "; ".join(f"{n / n_block:.1f}x ({name})" for name, n in n_paper.items()))
    for name, n in loss_only.items():
        print(f"forward passes for the mean loss alone, paper / block ({name}): {n_paper[name] / n:.1f}x")
    print(f"\ncomplexity term, variance-adaptive / Azuma, each at its own alpha ({va['alpha']} / {azb['alpha']}): "
          f"{va['terms']['complexity_bits']:.3f} / {azb['terms']['complexity_bits']:.3f} = "
          f"{va['terms']['complexity_bits'] / azb['terms']['complexity_bits']:.3f}")
    sv, sa = same_alpha["variance_adaptive"], same_alpha["azuma"]
    print(f"complexity term at the same alpha = {va['alpha']}: {sv['terms']['complexity_bits']:.3f} / "
          f"{sa['terms']['complexity_bits']:.3f} = {sv['terms']['complexity_bits'] / sa['terms']['complexity_bits']:.3f}")
    print(f"headline bounds on all {blk.num_draws:,} windows: variance-adaptive {va['bound_bits_per_token']:.3f} "
          f"(lambda {va['lambda']}), Azuma {azb['bound_bits_per_token']:.3f} bits/token")


if __name__ == "__main__":
    main()
