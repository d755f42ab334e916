"""Is this machine's CUDA path right? One script: every check against the CPU reference, then throughput.

    python benchmarks/gpu_check.py                      # on a GPU machine: --device cuda, full sizes (< 8 min)
    python benchmarks/gpu_check.py --device cpu --tiny  # the same checks at tiny sizes on CPU (what the tests run)

Checks, each printed as PASS / FAIL with its numbers as it finishes (docs/gpu.md):

1. layers: every structured layer (dense, lowrank, LoRA, Kronecker, Monarch; models/layers.py) and a GPT with
   structured layers in a random subspace (SubLoRA: models/subspace.py, Kronecker projection): forward outputs,
   input gradients and parameter gradients on --device against the same module on CPU (float32, relative
   tolerance LAYER_RTOL of the largest magnitude);
2. bf16: the demo GPT's per-token smoothed loss scored under bf16 autocast against float32 on --device; how far
   the empirical term of a certificate (the mean smoothed loss, what the bound moves by to first order) moves,
   against BF16_TOL_BITS; and whether the per-token differences fit `verify`'s re-scoring tolerance;
3. ddp: one DistributedDataParallel training step in a one-process group (nccl on CUDA, gloo on CPU) against the
   same step without DDP (train/distributed.py, train/trainer.py);
4. throughput (no pass/fail): scoring tokens/s of the demo GPT and of SmolLM2-135M (when its GGUF is present
   locally: assets.smollm2_gguf, never downloaded here), beside the card's peak bf16 FLOP/s.

Exits 1 if any check fails, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import socket
import sys
import time

import torch

# a GPU's float32 kernels reorder sums: agreement to this fraction of the largest magnitude is "the same"
LAYER_RTOL = 2e-4
# how far bf16 scoring may move the empirical term of a certificate (bits/token) and still pass: below the
# third decimal the reports print
BF16_TOL_BITS = 5e-3
ALPHA = 0.1  # the smoothing a demo certificate uses
# peak dense bf16 tensor-core FLOP/s from the data sheets, by a substring of the device name
PEAK_BF16 = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
             ("L40", 181e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12), ("RTX 4090", 165e12),
             ("RTX 3090", 71e12), ("A6000", 155e12)]

RESULTS: list[tuple[str, bool, str]] = []


def say(msg: str) -> None:
    print(msg, flush=True)


def record(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    say(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() / scale


# -- 1. layers ---------------------------------------------------------------------------------------------
def _fwd_bwd(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, device: str):
    module = module.to(device)
    x = x.to(device).requires_grad_(True)
    y = module(x)
    (y * g.to(device)).sum().backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    return y, x.grad, grads


def check_layers(device: str, tiny: bool) -> None:
    n_in, n_out, tokens = (32, 64, 16) if tiny else (768, 3072, 2048)
    gen = torch.Generator().manual_seed(0)
    for kind in ("dense", "lowrank:8", "lora:8", "kron", "monarch:4"):
        try:
            check_layer(kind, n_in, n_out, tokens, gen, device)
        except Exception as e:  # noqa: BLE001 - a crash is this layer's failure; check the others
            record(f"layer {kind} ({n_in}->{n_out})", False, f"raised {type(e).__name__}: {e}")
    check_gpt_layers(device, tiny)


def check_layer(kind: str, n_in: int, n_out: int, tokens: int, gen: torch.Generator, device: str) -> None:
    from tokenbound.models.layers import make_linear

    layer = make_linear(kind, n_in, n_out, True, 7)
    with torch.no_grad():  # LoRA's B starts at zero: give every parameter a non-trivial value
        for p in layer.parameters():
            if p.requires_grad and not p.abs().sum():
                p.normal_(0.0, 0.02, generator=gen)
    x = torch.randn(3, tokens, n_in, generator=gen)
    g = torch.randn(3, tokens, n_out, generator=gen)
    ref = _fwd_bwd(copy.deepcopy(layer), x, g, "cpu")
    got = _fwd_bwd(copy.deepcopy(layer), x, g, device)
    errs = {"out": rel_err(ref[0], got[0]), "d input": rel_err(ref[1], got[1])}
    errs.update({f"d {n}": rel_err(ref[2][n], got[2][n]) for n in ref[2]})
    missing = set(ref[2]) ^ set(got[2])
    worst = max(errs, key=errs.get)
    record(f"layer {kind} ({n_in}->{n_out})", not missing and errs[worst] <= LAYER_RTOL,
           f"max rel. error {errs[worst]:.1e} ({worst}) over {len(errs)} tensors, tolerance {LAYER_RTOL:g}"
           + (f"; gradients missing on one side: {sorted(missing)}" if missing else ""))


def check_gpt_layers(device: str, tiny: bool) -> None:
    from tokenbound.models.gpt import build_model

    base = {"vocab_size": 64 if tiny else 8192, "n_layer": 2, "n_head": 2, "n_embd": 32 if tiny else 128,
            "block_size": 16 if tiny else 128, "seed": 3}
    for layers, dim in (("attn=monarch:4,mlp=kron,head=dense", None), ("lora:4", 64 if tiny else 2000)):
        cfg = {**base, "layers": layers, "subspace_dim": dim}
        gen = torch.Generator().manual_seed(1)
        ids = torch.randint(0, base["vocab_size"], (2, base["block_size"]), generator=gen)
        outs = {}
        for dev in ("cpu", device):
            torch.manual_seed(0)
            model = build_model(cfg).to(dev)
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad and not p.abs().sum():
                        p.normal_(0.0, 0.02, generator=torch.Generator().manual_seed(2))
            logits = model(ids.to(dev))
            torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids.to(dev).flatten()).backward()
            outs[dev] = (logits, {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        if device == "cpu":
            outs = {"cpu": outs["cpu"], "dev": outs["cpu"]}
        (l0, g0), (l1, g1) = outs["cpu"], outs[device if device != "cpu" else "dev"]
        errs = {"logits": rel_err(l0, l1), **{f"d {n}": rel_err(g0[n], g1[n]) for n in g0 if n in g1}}
        worst = max(errs, key=errs.get)
        name = f"GPT {layers}" + (f" + subspace:{dim}" if dim else "")
        record(name, set(g0) == set(g1) and errs[worst] <= LAYER_RTOL,
               f"max rel. error {errs[worst]:.1e} ({worst}) over {len(errs)} tensors, tolerance {LAYER_RTOL:g}")


# -- 2. bf16 autocast --------------------------------------------------------------------------------------
def demo_model(device: str, tiny: bool):
    from tokenbound.configs import preset
    from tokenbound.models.gpt import GPTConfig, GPTLanguageModel, build_model

    model_cfg = {**preset("tiny" if tiny else "demo")["model"], "vocab_size": 256 if tiny else 8192,
                 "layers": "lora:8", "seed": 0}
    cfg = GPTConfig.from_dict(model_cfg)
    module = build_model(cfg)
    with torch.no_grad():  # sharper than a fresh init: logits far from uniform, as a trained model's are
        for name, p in module.named_parameters():
            p.mul_(4.0) if "wte" in name else None
    return GPTLanguageModel(module, cfg).to(device), cfg


def smoothed_loss_bits(lp: torch.Tensor, ids: torch.Tensor, vocab: int) -> torch.Tensor:
    p = lp[:, :-1].float().gather(-1, ids[:, 1:, None]).squeeze(-1).exp().double()
    return -torch.log2((1 - ALPHA) * p + ALPHA / vocab)


def check_bf16(device: str, tiny: bool) -> None:
    from tokenbound.evaluate.rescore import RESCORE_TOL_BITS

    model, cfg = demo_model(device, tiny)
    gen = torch.Generator().manual_seed(5)
    batches = 2 if tiny else 16
    fp32, bf16 = [], []
    for _ in range(batches):
        ids = torch.randint(0, cfg.vocab_size, (8, cfg.block_size), generator=gen).to(device)
        fp32.append(smoothed_loss_bits(model.log_probs(ids), ids, cfg.vocab_size))
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
            bf16.append(smoothed_loss_bits(model.log_probs(ids), ids, cfg.vocab_size))
    a, b = torch.cat([x.flatten() for x in fp32]), torch.cat([x.flatten() for x in bf16])
    shift = (b.mean() - a.mean()).item()
    per_token = (b - a).abs().max().item()
    record("bf16 autocast scoring vs float32", abs(shift) <= BF16_TOL_BITS,
           f"{a.numel():,} tokens: empirical term {a.mean().item():.4f} (fp32) vs {b.mean().item():.4f} (bf16), "
           f"the bound moves by {shift:+.2e} bits/token (tolerance {BF16_TOL_BITS:g}); per-token max "
           f"|diff| {per_token:.2e} bits, {'within' if per_token <= RESCORE_TOL_BITS else 'beyond'} verify's "
           f"re-scoring tolerance {RESCORE_TOL_BITS:g} (so certify from float32 scores, or re-score in bf16)")


# -- 3. DDP ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp(device: str, tiny: bool) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tokenbound.models.gpt import build_model

    cfg = {"vocab_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 32 if tiny else 128, "block_size": 16,
           "layers": "attn=monarch:4,mlp=kron,head=dense", "seed": 4}
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(6)).to(device)

    def step(wrap: bool) -> dict[str, torch.Tensor]:
        model = build_model(cfg).to(device)
        net = DistributedDataParallel(model, device_ids=[torch.device(device).index or 0]
                                      if device.startswith("cuda") else None) if wrap else model
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        logits = net(ids)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
        opt.step()
        return {n: p.detach().cpu().clone() for n, p in model.named_parameters()}

    backend = "nccl" if device.startswith("cuda") else "gloo"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    except Exception as e:  # noqa: BLE001 - any failure to form the group is this check's failure
        record(f"ddp one-process {backend} step", False, f"cannot start the process group ({e})")
        return
    try:
        plain, ddp = step(False), step(True)
        moved = max((plain[n] - build_model(cfg).state_dict()[n]).abs().max().item() for n in plain)
        err = max(rel_err(plain[n], ddp[n]) for n in plain)
        record(f"ddp one-process {backend} step vs single process", err <= LAYER_RTOL and moved > 0,
               f"max rel. difference of the updated weights {err:.1e} over {len(plain)} tensors "
               f"(the step moved the weights by up to {moved:.1e})")
    except Exception as e:  # noqa: BLE001
        record(f"ddp one-process {backend} step vs single process", False, f"raised {type(e).__name__}: {e}")
    finally:
        dist.destroy_process_group()


# -- 4. throughput -----------------------------------------------------------------------------------------
def peak_flops(device: str) -> tuple[str, float | None]:
    if not device.startswith("cuda"):
        return "CPU", None
    name = torch.cuda.get_device_properties(torch.device(device)).name
    return name, next((v for key, v in PEAK_BF16 if key in name), None)


def _tokens_per_s(model, vocab: int, batch: int, length: int, device: str, seconds: float, dtype) -> float:
    gen = torch.Generator().manual_seed(8)
    ids = torch.randint(0, vocab, (batch, length), generator=gen).to(device)
    ctx = (torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)
           if dtype is not None else torch.no_grad())
    with ctx:
        model.log_probs(ids)  # warm-up
        sync(device)
        n, t0 = 0, time.perf_counter()
        while True:
            model.log_probs(ids)
            n += 1
            sync(device)
            if time.perf_counter() - t0 >= seconds:
                break
    return n * batch * length / (time.perf_counter() - t0)


def throughput(device: str, tiny: bool, smollm2: bool) -> None:
    card, peak = peak_flops(device)
    peak_txt = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown"
    say(f"info  device {card}: peak dense bf16 {peak_txt}")
    seconds = 0.5 if tiny else 10.0
    model, cfg = demo_model(device, tiny)
    params = sum(p.numel() for p in model.module.parameters())
    flop_per_token = 2 * params + 2 * cfg.n_layer * cfg.block_size * cfg.n_embd  # weights + attention
    for label, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        tps = _tokens_per_s(model, cfg.vocab_size, 8 if tiny else 64, cfg.block_size, device, seconds, dtype)
        ceiling = f"{peak / flop_per_token:,.0f}" if peak else "unknown"
        say(f"info  throughput demo GPT ({params / 1e6:.2f}M params, {label}): {tps:,.0f} tokens/s "
            f"= {tps * flop_per_token / 1e12:.3f} TFLOP/s; the card's bf16 limit is {ceiling} tokens/s")
    if not smollm2:
        say("info  throughput SmolLM2-135M: skipped (--no-smollm2, or --tiny)")
        return
    try:
        from tokenbound.assets import smollm2_gguf
        from tokenbound.errors import TokenboundError
        from tokenbound.models.loading import load

        path = smollm2_gguf(download=False)
    except TokenboundError as e:
        say(f"info  throughput SmolLM2-135M: skipped, its GGUF is not present locally ({e})")
        return
    say(f"info  loading {path} ...")
    lm = load(path, device=device)
    tps = _tokens_per_s(lm, lm.vocab_size, 8, 512, device, seconds, None)
    flop = 2 * 135e6
    ceiling = f"{peak / flop:,.0f}" if peak else "unknown"
    say(f"info  throughput SmolLM2-135M (float32, batch 8 x 512): {tps:,.0f} tokens/s = "
        f"{tps * flop / 1e12:.3f} TFLOP/s; the card's bf16 limit is {ceiling} tokens/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU; what the tests run)")
    ap.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 throughput line")
    args = ap.parse_args(argv)
    if not (args.device == "cpu" or args.device.split(":")[0] == "cuda"):
        ap.error(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device}: CUDA is not available on this machine "
              f"(torch {torch.__version__}); use --device cpu --tiny", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    say(f"gpu_check on {args.device} (torch {torch.__version__}){' --tiny' if args.tiny else ''}")
    for title, fn in (("1/4 layers, forward and backward against CPU", lambda: check_layers(args.device, args.tiny)),
                      ("2/4 bf16 autocast scoring against float32", lambda: check_bf16(args.device, args.tiny)),
                      ("3/4 one-process DDP step", lambda: check_ddp(args.device, args.tiny)),
                      ("4/4 scoring throughput", lambda: throughput(args.device, args.tiny,
                                                                    not (args.tiny or args.no_smollm2)))):
        say(f"== {title} ({time.perf_counter() - t0:.0f} s)")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a crash in a check is that check's failure; go on to the next
            record(title, False, f"raised {type(e).__name__}: {e}")
    failed = [name for name, ok, _ in RESULTS if not ok]
    say(f"== summary: {len(RESULTS) - len(failed)} of {len(RESULTS)} checks PASS in "
        f"{time.perf_counter() - t0:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
