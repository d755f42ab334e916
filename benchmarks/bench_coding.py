"""Entropy coding of quantized weights: encode + decode time and overhead over the empirical entropy.

    python benchmarks/bench_coding.py [--n 100000000] [--levels 11] [--sigma 1.5] [--seed 0]

Symbols: a discretised Gaussian over K levels (round(N(0, sigma²)) clipped to ±(K−1)/2), i.e. the skewed
distribution quantized weights have. ``coding.entropy.encode_symbols`` then ``decode_symbols`` (checked equal);
overhead is measured against n·H(empirical), once for the coded words only ("beyond the header") and once for
the whole byte string (counts header, lengths, CRC32 included). For scale, zstd-3 on the raw uint8
symbols is timed in the same run (ratios are ours / theirs).
Goal: n = 10⁸, K = 11: encode + decode < 2 s on this CPU, decode costing about what encode does, and
≤ 0.01 % overhead beyond the header. Prints each stage as it finishes, then decode/encode and the total.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tokenbound.coding import entropy


def symbols(n: int, levels: int, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = (levels - 1) // 2
    out = np.empty(n, dtype=np.uint8)
    step = 1 << 24
    for i in range(0, n, step):   # chunked: never holds 10^8 float64s
        g = rng.standard_normal(min(step, n - i), dtype=np.float32) * sigma
        out[i:i + step] = np.clip(np.rint(g), -half, half).astype(np.int16) + half
    return out


def header_bytes(data: bytes) -> int:
    """Bytes of an encode_symbols stream that are not coded words (version, K, n, counts, W, CRC32)."""
    (_k, _n, r), off = entropy.varint_decode(data, 1, 3)
    _, off = entropy.varint_decode(data, off, 2 * int(r))
    (w,), off = entropy.varint_decode(data, off, 1)
    return len(data) - 4 * int(w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000_000)
    ap.add_argument("--levels", type=int, default=11)
    ap.add_argument("--sigma", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-zstd", action="store_true", help="skip the zstd reference")
    args = ap.parse_args()

    print(f"generating {args.n:,} symbols ...", flush=True)
    s = symbols(args.n, args.levels, args.sigma, args.seed)
    ideal = entropy.empirical_entropy_bits(s)
    # wall clock and this process's CPU time: on a shared machine the CPU time is what the coder costs
    print("encoding ...", flush=True)
    c0, t0 = time.process_time(), time.perf_counter()
    data = entropy.encode_symbols(s, args.levels)
    c1, t1 = time.process_time(), time.perf_counter()
    print(f"  encode {t1 - t0:.2f} s (CPU {c1 - c0:.2f} s)\ndecoding ...", flush=True)
    back = entropy.decode_symbols(data)
    c2, t2 = time.process_time(), time.perf_counter()
    print(f"  decode {t2 - t1:.2f} s (CPU {c2 - c1:.2f} s)\nchecking the round trip ...", flush=True)
    assert back.size == s.size and np.array_equal(back, s), "round trip failed"
    del back
    hdr = header_bytes(data)
    words_bits = 8 * (len(data) - hdr)
    total_bits = 8 * len(data)
    enc, dec = t1 - t0, t2 - t1
    print(f"n = {args.n:,} symbols over {args.levels} levels (discretised Gaussian, sigma {args.sigma})")
    print(f"empirical entropy     {ideal / args.n:.6f} bits/symbol   n*H = {ideal:,.0f} bits")
    print(f"coded words           {words_bits:,} bits   overhead beyond the header "
          f"{100 * (words_bits - ideal) / ideal:+.5f} %  (goal <= 0.01 %)")
    print(f"whole stream          {total_bits:,} bits   header {8 * hdr} bits   overhead "
          f"{100 * (total_bits - ideal) / ideal:+.5f} %")
    print(f"encode {enc:.2f} s   decode {dec:.2f} s   encode+decode {enc + dec:.2f} s  (goal < 2 s)   "
          f"decode/encode {dec / enc:.2f}   {args.n / (enc + dec) / 1e6:.1f} M symbols/s")
    print(f"CPU time: encode {c1 - c0:.2f} s   decode {c2 - c1:.2f} s   encode+decode {c2 - c0:.2f} s   "
          f"decode/encode {(c2 - c1) / max(c1 - c0, 1e-9):.2f}", flush=True)
    if not args.no_zstd:
        import zstandard

        raw = s.tobytes()
        for level in (3,):
            c = zstandard.ZstdCompressor(level=level)
            t0 = time.perf_counter()
            z = c.compress(raw)
            t1 = time.perf_counter()
            zstandard.ZstdDecompressor().decompress(z)
            t2 = time.perf_counter()
            print(f"zstd-{level:<2} on uint8 bytes  {8 * len(z):,} bits ({8 * len(z) / ideal:.4f} x n*H)   "
                  f"encode+decode {t2 - t0:.2f} s   size ratio ours/zstd {total_bits / (8 * len(z)):.4f}   "
                  f"time ratio ours/zstd {(enc + dec) / (t2 - t0):.2f}")


if __name__ == "__main__":
    main()
