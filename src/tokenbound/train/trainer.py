"""`tokenbound train`: AdamW, warmup + cosine, clipping, accumulation, validation, checkpoints, DDP.

Determinism: the batch rows of optimizer step k are drawn from (seed, k) and split into
``world_size * grad_accum`` disjoint parts (rank r, micro-step a takes part ``r * grad_accum + a``), and the
dropout RNG is reseeded from (seed, k, rank, micro-step) before each micro-step. Hence a resumed run repeats
the uninterrupted one, and N processes with A micro-batches see the same rows as 1 process with N*A.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import configs
from ..artifacts import read_json, write_json
from ..data.store import TokenStore
from ..errors import TimeLimitReached, TokenboundError
from ..evaluate.loss import autocast, mean_bits_per_token, model_loss
from ..evaluate.windows import batch_at, check_context, stream_batches
from ..models.gpt import GPTConfig, build_model, derive_seed, parameter_counts
from . import checkpoint as ckpt
from . import distributed as D
from .schedule import learning_rate

VAL_STEP_BASE = 1 << 40  # validation windows use steps >= 2**40 of the batch generator: disjoint from training


def resolve_config(store: TokenStore, *, preset: str | None, config: Path | None, layers: str | None,
                   subspace: int | None, seed: int, context: str | None) -> tuple[GPTConfig, configs.TrainConfig]:
    """Model and training config from a preset or config file plus the command-line overrides."""
    if (preset is None) == (config is None):
        raise TokenboundError("give exactly one of preset and config", param="preset")
    base = configs.preset(preset) if preset is not None else configs.load_config_file(config)
    model = dict(base["model"])
    for key, value in (("vocab_size", store.vocab_size), ("eot", store.eot)):
        if key in model and model[key] != value:
            raise TokenboundError(f"model {key} {model[key]!r} differs from the store's {value}",
                                  param="config", value=config)
        model[key] = value
    model["seed"] = int(seed)
    if layers is not None:
        model["layers"] = layers
    if subspace is not None:
        model["subspace_dim"] = int(subspace)
    if context is not None:
        model["context"] = check_context(context)
    try:
        return GPTConfig.from_dict(model), configs.TrainConfig.from_dict(base["train"])
    except TokenboundError as e:
        if config is None:
            raise
        raise TokenboundError(f"{e}", param="config", value=config) from None


def device_memory_bytes(device: str) -> int | None:
    """Total memory of `device` (physical RAM for the CPU), or None when it cannot be told."""
    try:
        if str(device).startswith("cuda"):
            return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, RuntimeError, AssertionError):
        return None


def check_memory(cfg: GPTConfig, tcfg: configs.TrainConfig, device: str) -> None:
    """Refuse a model that cannot fit before allocating it: a one-line error instead of a failed 25 GB malloc.

    The estimate is a lower bound of the peak, so nothing that fits is refused: the token embedding (V x width,
    always dense) in float32 plus one micro-batch's logits (batch x block x V, 2 bytes under CUDA autocast, else
    4). Everything else (blocks, gradients, optimizer moments, activations) only adds to it.
    """
    total = device_memory_bytes(device)
    if total is None:
        return
    logit_bytes = 2 if str(device).startswith("cuda") else 4
    need = 4 * cfg.vocab_size * cfg.n_embd + logit_bytes * tcfg.batch_size * cfg.block_size * cfg.vocab_size
    if need > total:
        gib = 2 ** 30
        raise TokenboundError(
            f"a GPT with vocabulary {cfg.vocab_size:,}, width {cfg.n_embd}, batch {tcfg.batch_size} x "
            f"block {cfg.block_size} needs at least {need / gib:,.1f} GiB (embedding + one batch of logits), more than "
            f"the {total / gib:,.1f} GiB of {device}; use a store with a smaller vocabulary or a smaller model/batch",
            param="data")


def make_optimizer(model: torch.nn.Module, tcfg: configs.TrainConfig, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only; biases, norms and 1-d vectors are not decayed."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.dim() >= 2]
    no_decay = [p for n, p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(tcfg.beta1, tcfg.beta2),
                             eps=1e-8, foreach=False)


def evaluate(model: torch.nn.Module, val: TokenStore, cfg: GPTConfig, tcfg: configs.TrainConfig,
             world: D.World) -> float:
    """Mean validation loss in bits per token over a fixed set of windows (the same for every call, every run with
    this seed and every world size: ``eval_batches`` steps from ``VAL_STEP_BASE`` on); the rows are split across
    ranks and the sums reduced."""
    batches = stream_batches(val, cfg.block_size, tcfg.eval_batches * tcfg.batch_size, tcfg.batch_size, cfg.seed,
                             cfg.context, step_base=VAL_STEP_BASE, rank=world.rank, world_size=world.size,
                             device=world.device)
    return mean_bits_per_token(model, batches, scorer="logits", device=world.device,
                               all_reduce=lambda sums: D.all_reduce_sum(world, sums)).bits_per_token


def optimizer_step(ddp: torch.nn.Module, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   store: TokenStore, cfg: GPTConfig, tcfg: configs.TrainConfig, world: D.World,
                   step: int) -> tuple[float, float]:
    """One optimizer step (``grad_accum`` micro-batches on this rank; DDP averages across ranks); returns this
    rank's mean micro-batch loss in nats and the pre-clipping gradient norm. The caller sets the lr."""
    step_loss = 0.0
    for micro in range(tcfg.grad_accum):
        part = world.rank * tcfg.grad_accum + micro
        torch.manual_seed(derive_seed(cfg.seed, f"dropout:{step}:{part}"))
        x, y, seg = batch_at(store, cfg.block_size, tcfg.batch_size, cfg.seed, step, cfg.context,
                             world.device, part=part, num_parts=world.size * tcfg.grad_accum)
        sync = micro == tcfg.grad_accum - 1 or not world.distributed
        with (contextlib.nullcontext() if sync else ddp.no_sync()), autocast(world.device):
            loss = model_loss(ddp, x, y, seg)
            (loss / tcfg.grad_accum).backward()
        step_loss += float(loss.detach()) / tcfg.grad_accum
    if not math.isfinite(step_loss):
        raise TokenboundError(f"training diverged at step {step} (loss {step_loss}); lower the learning rate")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip) if tcfg.grad_clip > 0 \
        else torch.tensor(float("nan"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, float(grad_norm)


def _progress(total: int, initial: int, enabled: bool):
    from ..progress import Progress  # a bar on a terminal, a line every few seconds in a log

    return Progress(total, "train", "steps", initial=initial, enabled=enabled, file=sys.stderr)


def train(data: Path, out: Path, *, preset: str | None = None, config: Path | None = None, layers: str | None = None,
          subspace: int | None = None, max_minutes: float | None = None, steps: int | None = None, seed: int = 0,
          device: str = "cpu", resume: bool = False, progress: bool = True, context: str | None = None,
          force: bool = False, init_from: Path | None = None) -> dict[str, Any]:
    """Train a GPT on the TokenStore `data` and write the Run directory `out`; returns the summary dict.

    With ``resume``, the model and training configs come from the run being resumed; `steps` may raise
    its total step count. `max_minutes` only aborts: when it is spent, the run is checkpointed (not finalized)
    and `TimeLimitReached` is raised; resuming continues it, so the finished run never depends on the clock.
    `force` overwrites: a stale ``out.partial`` is discarded and an existing `out` replaced once the run is done.
    `init_from` (a finished Run) starts the model from that Run's weights: full fine-tuning with dense layers,
    LoRA with ``lora:R`` layers (written merged; train/init.py).
    """
    world = D.setup(device)
    try:
        return _train(world, Path(data), Path(out), preset=preset, config=config, layers=layers, subspace=subspace,
                      max_minutes=max_minutes, steps=steps, seed=seed, resume=resume, progress=progress,
                      context=context, force=force, init_from=init_from)
    finally:
        D.teardown(world)


def _train(world: D.World, data: Path, out: Path, *, preset, config, layers, subspace, max_minutes, steps, seed,
           resume, progress, context, force=False, init_from=None) -> dict[str, Any]:
    from . import init as finetune

    store = TokenStore.open(data, check=True)  # hash, id range and index before any use (docs/data.md)
    work = ckpt.work_dir_for(out)
    val = None if store.val is None else store.val.check("data")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise TokenboundError(f"must be a positive number of minutes, got {max_minutes}", param="max_minutes")
    base = None
    if resume:
        if init_from is not None:
            raise TokenboundError("a resumed run starts from what it recorded; omit it", param="init_from")
        source = ckpt.resume_source(out) / "config.json"
        saved = configs.load_config_file(source)
        raw = read_json(source)
        preset = raw.get("data", {}).get("preset")
        if raw.get("init_from") is not None:
            if raw["init_from"].get("merged_adapter"):
                raise TokenboundError(f"{out} is a finished LoRA fine-tune, written merged; it cannot be "
                                      f"continued (start a new fine-tune from it with --init-from)", param="resume")
            base = finetune.resolve_base(raw["init_from"], source.parent)
        if saved["model"].get("vocab_size") != store.vocab_size:
            raise TokenboundError("vocabulary differs from the resumed run's", param="data", value=data)
        cfg, tcfg = GPTConfig.from_dict(saved["model"]), configs.TrainConfig.from_dict(saved["train"])
    else:
        cfg, tcfg = resolve_config(store, preset=preset, config=config, layers=layers, subspace=subspace,
                                   seed=seed, context=context)
        base = None if init_from is None else finetune.open_base(init_from)
    base_module = None
    if base is not None:
        base_module, base_cfg = finetune.load_base(base, world.device)
        finetune.check_compatible(cfg, base_cfg, base.path)
    if steps is not None:
        if steps < 1:
            raise TokenboundError(f"must be >= 1, got {steps}", param="steps")
        tcfg.steps = int(steps)
    run_config = {"model": cfg.to_dict(), "train": tcfg.to_dict(),
                  "data": {"path": str(data), "sha256": store.sha256, "world_size": world.size,
                           "preset": preset}}
    if base is not None:
        run_config["init_from"] = base.record(out)
    check_memory(cfg, tcfg, world.device)
    model = build_model(cfg).to(world.device)  # before touching the disk: a bad --layers leaves nothing behind
    if base_module is not None:
        finetune.copy_weights(model, base_module)
        del base_module
    counts = parameter_counts(model)
    if counts["coded"] == 0:
        raise TokenboundError("the model has no trainable parameters", param="layers", value=cfg.layers)
    if world.is_main:
        ckpt.prepare_work_dir(out, resume, force=force)
        if not resume:
            ckpt.write_log(work, [])
        write_json(work / "config.json", run_config)
    D.barrier(world)

    base_lr = tcfg.subspace_lr if cfg.subspace_dim and tcfg.subspace_lr else tcfg.lr
    optimizer = make_optimizer(model, tcfg, base_lr)
    state = {"step": 0, "elapsed_s": 0.0, "tokens": 0}
    if resume:
        state = ckpt.load_checkpoint(work, model, optimizer)
    start_step = int(state["step"])
    log = ckpt.read_log(work, start_step) if world.is_main else []
    if world.is_main and resume:
        ckpt.write_log(work, log)
    ddp = DistributedDataParallel(model) if world.distributed else model
    model.train()

    tokens_per_step = tcfg.batch_size * tcfg.grad_accum * world.size * cfg.block_size
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    t0, elapsed0 = time.monotonic(), float(state["elapsed_s"])
    bar = _progress(tcfg.steps, start_step, progress and world.is_main)
    step, last_val, loss_sum, loss_n, t_log = start_step, None, 0.0, 0, time.monotonic()
    timed_out = False
    try:
        while step < tcfg.steps:
            # A time limit may only abort: it never decides how many steps the finished run has.
            if D.broadcast_flag(world, deadline is not None and time.monotonic() > deadline):
                timed_out = True
                break
            lr = learning_rate(step, lr=base_lr, steps=tcfg.steps, warmup_steps=tcfg.warmup_steps,
                               min_lr_ratio=tcfg.min_lr_ratio)
            for g in optimizer.param_groups:
                g["lr"] = lr
            step_loss, grad_norm = optimizer_step(ddp, model, optimizer, store, cfg, tcfg, world, step)
            step += 1
            state["tokens"] = int(state["tokens"]) + tokens_per_step
            loss_sum += step_loss
            loss_n += 1
            bar.update(1)
            if step % tcfg.log_interval == 0 or step == tcfg.steps:
                mean_loss = D.all_reduce_sum(world, [loss_sum / loss_n])[0] / world.size
                now = time.monotonic()
                tok_s = loss_n * tokens_per_step / max(now - t_log, 1e-9)
                record = {"step": step, "train_loss_bits": mean_loss / math.log(2), "lr": lr,
                          "grad_norm": grad_norm, "tokens": state["tokens"], "tokens_per_s": tok_s,
                          "elapsed_s": elapsed0 + now - t0}
                bar.set_postfix(loss_bits=f"{record['train_loss_bits']:.3f}", tok_s=f"{tok_s:,.0f}")
                if world.is_main:
                    ckpt.append_log(work, record)
                loss_sum, loss_n, t_log = 0.0, 0, now
            if val is not None and (step % tcfg.eval_interval == 0 or step == tcfg.steps):
                last_val = _validate(model, val, cfg, tcfg, world, work, step, elapsed0 + time.monotonic() - t0)
                t_log = time.monotonic()
            if step % tcfg.checkpoint_interval == 0 and step < tcfg.steps:
                _checkpoint(world, work, model, optimizer, state, step, elapsed0 + time.monotonic() - t0)
    finally:
        bar.close()
    if timed_out:
        _checkpoint(world, work, model, optimizer, state, step, elapsed0 + time.monotonic() - t0)
        raise TimeLimitReached(
            f"the {max_minutes:g}-minute limit was reached after {step} of {tcfg.steps} steps; the "
            f"run is checkpointed but not finalized (a time limit never decides what is trained): rerun with "
            f"--resume to continue", param="max_minutes")
    if val is not None and (last_val is None or last_val[0] != step):
        last_val = _validate(model, val, cfg, tcfg, world, work, step, elapsed0 + time.monotonic() - t0)
    elapsed = elapsed0 + time.monotonic() - t0
    _checkpoint(world, work, model, optimizer, state, step, elapsed)
    val_bits = None if last_val is None else last_val[1]
    summary = {"run": str(out), "steps": step, "total_steps": tcfg.steps, "completed": step >= tcfg.steps,
               "parameterization": cfg.parameterization, "coded_params": counts["coded"],
               "frozen_params": counts["frozen"], "val_bits_per_token": val_bits, "wall_time_s": elapsed,
               "tokens": int(state["tokens"]), "tokens_per_s": int(state["tokens"]) / max(elapsed, 1e-9),
               "world_size": world.size}
    saved_model, saved_counts, lineage = model, counts, {}
    if base is not None:
        if finetune.has_adapter(cfg):  # a LoRA base from another Run is no seed: write the merged dense model
            saved_model, merged_cfg = finetune.merged(model, cfg)
            saved_counts = parameter_counts(saved_model)
            run_config = {**run_config, "model": merged_cfg.to_dict(),
                          "init_from": {**run_config["init_from"], "merged_adapter": cfg.layers}}
        lineage = {"init_from": run_config["init_from"], "inherited_stores": finetune.inherited_stores(base, out)}
    if world.is_main:
        ckpt.finalize_run(work, out, saved_model, run_config, {
            "data": {"path": str(data), "sha256": store.sha256}, "seed": cfg.seed, "preset": preset,
            "parameterization": cfg.parameterization, "coded_params": saved_counts["coded"],
            "trainable_params": counts["coded"], "frozen_params": saved_counts["frozen"], "steps": step,
            "total_steps": tcfg.steps, "completed": step >= tcfg.steps, "final_val_bits_per_token": val_bits,
            "wall_time_s": elapsed, "tokens": int(state["tokens"]), "context": cfg.context,
            "world_size": world.size, **lineage})
    D.barrier(world)
    return summary


def _validate(model, val, cfg, tcfg, world, work, step, elapsed) -> tuple[int, float]:
    bits = evaluate(model, val, cfg, tcfg, world)
    if world.is_main:
        ckpt.append_log(work, {"step": step, "val_bits_per_token": bits, "elapsed_s": elapsed})
    return step, bits


def _checkpoint(world, work, model, optimizer, state, step, elapsed) -> None:
    state.update(step=step, elapsed_s=elapsed)
    if world.is_main:
        ckpt.save_checkpoint(work, model, optimizer, dict(state))
    D.barrier(world)
