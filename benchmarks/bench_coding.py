"""Entropy coding of quantized weights: encode + decode time, old path against new, and overhead over the entropy.

    python benchmarks/bench_coding.py [--n 100000000] [--levels 11] [--sigma 1.5] [--seed 0] [--repeats 3]

Symbols: a discretised Gaussian over K levels (round(N(0, sigma²)) clipped to ±(K−1)/2), i.e. the skewed
distribution quantized weights have. Two paths of ``coding.entropy``, run alternately in the same process
(``--repeats`` rounds; each round's output checked equal to the input):

- old: ``encode_symbols(grouped=False)`` (symbols coded one by one, format byte 1) and ``decode_symbols`` into
  an int64 array, i.e. what every version before tuple coding wrote and returned;
- new: ``encode_symbols`` (at this size m-tuples coded as one letter, format byte 16·m + 1) and
  ``decode_symbols(dtype=None)`` into the smallest integer type that holds K − 1.

Overhead is measured against n·H(empirical), once for the coded words only ("beyond the header") and once for
the whole byte string (counts header, lengths, CRC32 included). For scale, zstd-3 on the raw uint8 symbols is
timed in the same run (ratios are ours / theirs).
Goal: n = 10⁸, K = 11: encode + decode < 2 s on this CPU, decode costing about what encode does, and
≤ 0.01 % overhead beyond the header. Prints each stage as it finishes, then the medians and old/new ratios.
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


def run_path(s: np.ndarray, levels: int, new: bool) -> tuple[bytes, list[float]]:
    """(the stream, [encode wall, decode wall, encode CPU, decode CPU] in seconds) of one path, checked."""
    c0, t0 = time.process_time(), time.perf_counter()
    data = entropy.encode_symbols(s, levels) if new else entropy.encode_symbols(s, levels, grouped=False)
    c1, t1 = time.process_time(), time.perf_counter()
    back = entropy.decode_symbols(data, dtype=None) if new else entropy.decode_symbols(data)
    c2, t2 = time.process_time(), time.perf_counter()
    assert back.size == s.size and np.array_equal(back, s), "round trip failed"
    return data, [t1 - t0, t2 - t1, c1 - c0, c2 - c1]


def overhead_lines(name: str, data: bytes, ideal: float) -> str:
    hdr = header_bytes(data)
    words_bits, total_bits = 8 * (len(data) - hdr), 8 * len(data)
    return (f"{name}: format byte 0x{data[0]:02x}   coded words {words_bits:,} bits, overhead beyond the header "
            f"{100 * (words_bits - ideal) / ideal:+.5f} % (goal <= 0.01 %)   whole stream {total_bits:,} bits, "
            f"header {8 * hdr} bits, overhead {100 * (total_bits - ideal) / ideal:+.5f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000_000)
    ap.add_argument("--levels", type=int, default=11)
    ap.add_argument("--sigma", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of old then new (alternating order)")
    ap.add_argument("--no-zstd", action="store_true", help="skip the zstd reference")
    args = ap.parse_args()

    print(f"generating {args.n:,} symbols ...", flush=True)
    s = symbols(args.n, args.levels, args.sigma, args.seed)
    ideal = entropy.empirical_entropy_bits(s)
    # wall clock and this process's CPU time: on a shared machine the CPU time is what the coder costs
    times: dict[str, list[list[float]]] = {"old": [], "new": []}
    streams: dict[str, bytes] = {}
    for rep in range(args.repeats):
        order = ("old", "new") if rep % 2 == 0 else ("new", "old")  # alternate: neither always runs first
        for name in order:
            streams[name], t = run_path(s, args.levels, name == "new")
            times[name].append(t)
            print(f"round {rep + 1}/{args.repeats} {name}: encode {t[0]:.2f} s + decode {t[1]:.2f} s = "
                  f"{t[0] + t[1]:.2f} s   (CPU {t[2]:.2f} + {t[3]:.2f} s)", flush=True)
    # medians of each column, the totals included (the median total is not the sum of the median parts)
    med = {k: np.median(np.array([[e, d, e + d, ce, cd, ce + cd] for e, d, ce, cd in v]), axis=0)
           for k, v in times.items()}
    print(f"n = {args.n:,} symbols over {args.levels} levels (discretised Gaussian, sigma {args.sigma}); "
          f"empirical entropy {ideal / args.n:.6f} bits/symbol, n*H = {ideal:,.0f} bits")
    for name in ("old", "new"):
        print(overhead_lines(name, streams[name], ideal))
    for name in ("old", "new"):
        e, d, t, ce, cd, ct = med[name]
        print(f"median of {args.repeats} {name}: encode {e:.2f} s   decode {d:.2f} s   encode+decode {t:.2f} s"
              f"  (goal < 2 s)   decode/encode {d / e:.2f}   {args.n / t / 1e6:.1f} M symbols/s   "
              f"CPU {ce:.2f} + {cd:.2f}, total {ct:.2f} s")
    old, new = med["old"], med["new"]
    print(f"old/new (median): encode {old[0] / new[0]:.2f}x   decode {old[1] / new[1]:.2f}x   encode+decode "
          f"{old[2] / new[2]:.2f}x   CPU encode+decode {old[5] / new[5]:.2f}x", flush=True)
    if not args.no_zstd:
        import zstandard

        raw = s.tobytes()
        new_total = med["new"][2]
        for level in (3,):
            c = zstandard.ZstdCompressor(level=level)
            t0 = time.perf_counter()
            z = c.compress(raw)
            t1 = time.perf_counter()
            zstandard.ZstdDecompressor().decompress(z)
            t2 = time.perf_counter()
            print(f"zstd-{level:<2} on uint8 bytes  {8 * len(z):,} bits ({8 * len(z) / ideal:.4f} x n*H)   "
                  f"encode+decode {t2 - t0:.2f} s   size ratio new/zstd {len(streams['new']) / len(z):.4f}   "
                  f"time ratio new/zstd {new_total / (t2 - t0):.2f}")


if __name__ == "__main__":
    main()
