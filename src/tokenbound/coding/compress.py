"""`tokenbound compress`: a model -> a CompressedModel with a verified, itemised message length (issue 5 item 7).

Methods (``--method SPEC``, parsed by ``coding.compressed.parse_method``):
- ``quant:levels=11[,scope=tensor|global][,codebook=kmeans|uniform][,stream=tensor|joint][,clip=Q][,iters=N]``
  codebook quantization of a trained Run's coded tensors (``coding.quantize``). ``grid=5/7/11/15`` instead of
  ``levels`` picks the level count after seeing the data, by the two-part code length of the training set
  (message bits + m · training bits per token, m = training tokens), and pays log2 |grid| grid bits.
- ``qat:levels=11,steps=300[,lr=1e-4,codebook_lr=..,batch=16,optimizer=adam|sgd]`` quantization-aware
  training on the training store (``coding.qat``), then the same code as ``quant``.
- ``ptq:...`` for ``--hf``/``--gguf`` (``coding.ptq.compress_pretrained``) and ``archive`` for any source
  (``coding.archive.compress_archive``).

Every CompressedModel written here is decoded back from disk (``compressed.decode_state``: sha256 of every file,
then the state hash) before this returns, so a reported message length always has a working decoder.
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..artifacts import path_record, read_json, read_manifest, sha256_dir, sha256_file
from ..errors import TokenboundError
from .compressed import decode_state, parse_method

SOURCE_FLAGS = {"run": "--run", "hf": "--hf", "gguf": "--gguf"}
QUANT_KEYS = {"levels", "scope", "codebook", "clip", "iters", "stream", "grid"}
QAT_KEYS = QUANT_KEYS - {"grid"} | {"steps", "lr", "codebook_lr", "batch", "optimizer", "momentum"}
EVAL_TOKENS = 4096
GRID_EVAL_BATCHES = 8


METHOD_EXAMPLES = {"quant": "quant:levels=11", "qat": "qat:levels=11,steps=300",
                   "ptq": "ptq:bits=2,group=64,algo=gptq", "archive": "archive"}


def check_method_name(method_spec: str) -> None:
    """A one-line error listing the valid methods when the spec does not start with one (before its parameters
    are parsed, so `zip:9` is called an unknown method, not a malformed parameter list)."""
    name = str(method_spec).partition(":")[0].strip()
    if name and name not in METHOD_EXAMPLES:
        raise TokenboundError(f"--method {method_spec}: unknown method {name!r}; valid methods: "
                              + ", ".join(METHOD_EXAMPLES.values()) + " (docs/compression.md)")


def compress(source_type: str, source_path: str | Path, method_spec: str, out: str | Path,
             data: str | Path | None = None, force: bool = False, seed: int = 0, *,
             eval_data: str | Path | None = None, eval_tokens: int = EVAL_TOKENS, device: str = "cpu",
             progress: bool = True) -> dict[str, Any]:
    """Compress `source_path` (a Run, a Hugging Face directory or a .gguf file) with `method_spec` into `out`.

    Returns a summary: the manifest's message_bits, bits_per_coded_param and breakdown, plus (with
    `eval_data`, a TokenStore whose ``val/`` split, or itself, is held out) bits per token before and after.
    """
    if source_type not in SOURCE_FLAGS:
        raise ValueError(f"source_type must be one of {sorted(SOURCE_FLAGS)}, got {source_type!r}")
    flag = SOURCE_FLAGS[source_type]
    src = Path(source_path)
    if not src.exists():
        raise TokenboundError(f"{flag} {src}: no such file or directory")
    check_method_name(method_spec)
    if eval_data is not None:
        heldout_store(Path(eval_data))  # a bad --eval-data is refused before any work
    if source_type == "hf" and src.is_dir() and (src / "config.json").exists():
        from ..models.hf import check_safetensors_weights

        check_safetensors_weights(src)  # before any copy, so the message names the user's directory
    name, params = parse_method(method_spec)
    out = Path(out)
    if out.exists() and not force:
        raise TokenboundError(f"--out {out}: already exists (use --force to overwrite)")
    started = time.time()
    if name in ("quant", "qat"):
        if source_type != "run":
            raise TokenboundError(f"--method {method_spec}: {name} compresses a trained Run; use --run "
                                  f"(for pretrained models use ptq:... or archive)")
        compress_run(src, out, name, params, method_spec, data=data, force=force, seed=seed, device=device,
                     progress=progress)
    elif name == "ptq":
        if source_type == "run":
            raise TokenboundError(f"--method {method_spec}: ptq is for pretrained models (--hf/--gguf); "
                                  f"use quant:/qat: for a Run")
        from ..data.store import TokenStore
        from .ptq import compress_pretrained

        if data is not None:
            TokenStore.open(Path(data), check=True)  # hash and id range before calibrating on it
        compress_pretrained(src, out, params, None if data is None else Path(data), force, seed, device=device)
    elif name == "archive":
        if params:
            raise TokenboundError(f"--method {method_spec}: archive takes no parameters")
        from .archive import compress_archive

        compress_archive(src, out, force)
    else:
        raise TokenboundError(f"--method {method_spec}: unknown method {name!r} (quant, qat, ptq, archive)")
    _, _, manifest = decode_state(out, device=device)   # the round trip every message length must survive
    summary = summarize(manifest, out)
    summary["seconds"] = round(time.time() - started, 2)
    if eval_data is not None:
        try:
            summary["eval"] = evaluate_before_after(src, out, Path(eval_data), eval_tokens, device)
        except BaseException:  # the command fails: leave no CompressedModel that looks like its result
            shutil.rmtree(out, ignore_errors=True)
            raise
    return summary


def summarize(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    bd = manifest["message_breakdown"]
    return {"out": str(out), "method": manifest.get("method"), "decoder": manifest.get("decoder"),
            "message_bits": manifest["message_bits"], "bits_per_coded_param": manifest.get("bits_per_coded_param"),
            "num_coded_params": manifest.get("num_coded_params"),
            "breakdown": {k: bd[k] for k in ("payload_bits", "header_bits", "prefix_bits", "grid_bits")},
            "extra_bits": manifest.get("extra_bits", {})}


# -- quant / qat on a Run -----------------------------------------------------------------------------------
def parse_quant_params(name: str, params: dict[str, Any], spec: str, seed: int):
    """(QuantConfig, QATConfig or None, level grid or None) from the method parameters; errors name --method."""
    from .qat import QATConfig
    from .quantize import QuantConfig

    allowed = QUANT_KEYS if name == "quant" else QAT_KEYS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TokenboundError(f"--method {spec}: unknown parameter(s) {', '.join(unknown)} for {name} "
                              f"(known: {', '.join(sorted(allowed))})")
    grid = None
    if "grid" in params:
        if "levels" in params:
            raise TokenboundError(f"--method {spec}: give levels or grid, not both")
        try:
            grid = sorted({int(v) for v in str(params["grid"]).split("/")})
        except ValueError:
            raise TokenboundError(f"--method {spec}: grid must be level counts separated by '/', e.g. 5/7/11") from None
    q_kw = {k: params[k] for k in ("scope", "codebook", "stream") if k in params}
    for k, conv in (("levels", int), ("iters", int), ("clip", float)):
        if k in params:
            if not isinstance(params[k], (int, float)) or (conv is int and not float(params[k]).is_integer()):
                raise TokenboundError(f"--method {spec}: {k} must be a number, got {params[k]!r}")
            q_kw[k] = conv(params[k])
    quant = QuantConfig(**q_kw)
    for k in grid or []:
        QuantConfig(**{**q_kw, "levels": k})   # validates every candidate up front
    qat = None
    if name == "qat":
        kw: dict[str, Any] = {"seed": seed}
        for k, field, conv in (("steps", "steps", int), ("lr", "lr", float), ("codebook_lr", "codebook_lr", float),
                               ("batch", "batch_size", int), ("momentum", "momentum", float)):
            if k in params:
                if not isinstance(params[k], (int, float)):
                    raise TokenboundError(f"--method {spec}: {k} must be a number, got {params[k]!r}")
                kw[field] = conv(params[k])
        if "optimizer" in params:
            kw["optimizer"] = str(params["optimizer"])
        qat = QATConfig(**kw)
    return quant, qat, grid


def compress_run(run: Path, out: Path, name: str, params: dict[str, Any], spec: str, *, data=None,
                 force: bool = False, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """quant/qat of a Run's coded tensors -> CompressedModel (decoder "quant"); returns the manifest."""
    import dataclasses

    from ..bounds.prefix import choice_bits
    from ..models.gpt import coded_state_dict, derive_seed, load_coded_state_dict, load_run_module, parameter_counts
    from .compressed import write_compressed
    from .hashing import state_sha256
    from .qat import mean_loss_bits, quantization_aware_training
    from .quantize import PAYLOAD, decode_message, decoded_state, encode_message, quantize_state

    quant, qat, grid = parse_quant_params(name, params, spec, seed)
    module, cfg = load_run_module(run, device=device)
    counts = parameter_counts(module)
    original = {n: t.clone() for n, t in coded_state_dict(module).items()}
    extra: dict[str, Any] = {}
    grid_bits = 0.0
    store = open_training_store(run, data) if data is not None else None  # checked before any work
    if grid is not None:
        # Two-part code length of the training set, m * (bits/token) + message bits, estimated on fixed batches.
        store = store or open_training_store(run, data)
        eval_seed = derive_seed(seed, "compress-grid")
        scores = {}
        for k in grid:
            qk = quantize_state(original, dataclasses.replace(quant, levels=k))
            body, bd = encode_message(qk, cfg.to_dict())
            load_coded_state_dict(module, decoded_state(qk))
            loss = mean_loss_bits(module, store, cfg.block_size, cfg.context, num_batches=GRID_EVAL_BATCHES,
                                  batch_size=16, seed=eval_seed)
            msg = bd["payload_bits"] + bd["header_bits"] + bd["prefix_bits"]
            scores[k] = {"train_bits_per_token": loss, "message_bits": msg,
                         "two_part_bits": msg + store.num_tokens * loss}
        best = min(grid, key=lambda k: scores[k]["two_part_bits"])
        quant = dataclasses.replace(quant, levels=best)
        grid_bits = choice_bits(len(grid))
        extra["grid"] = {"levels": grid, "chosen": best, "criterion": "message_bits + m * train_bits_per_token",
                         "m": store.num_tokens, "eval_seed": eval_seed, "scores": {str(k): v for k, v in scores.items()}}
        load_coded_state_dict(module, original)
    if qat is not None:
        store = store or open_training_store(run, data)
        qat = dataclasses.replace(qat, seed=derive_seed(seed, "qat"))
        eval_seed = derive_seed(seed, "qat-eval")
        plain = quantize_state(original, quant)
        load_coded_state_dict(module, decoded_state(plain))
        before = mean_loss_bits(module, store, cfg.block_size, cfg.context, num_batches=GRID_EVAL_BATCHES,
                                batch_size=16, seed=eval_seed)
        load_coded_state_dict(module, original)
        q, log = quantization_aware_training(module, store, cfg.block_size, cfg.context, quant, qat, progress)
        after = mean_loss_bits(module, store, cfg.block_size, cfg.context, num_batches=GRID_EVAL_BATCHES,
                               batch_size=16, seed=eval_seed)
        extra["qat_log"] = {**log, "train_bits_per_token_plain_quant": before, "train_bits_per_token_qat": after,
                            "eval_seed": eval_seed, "data": path_record(store.path, out)}
    else:
        q = quantize_state(original, quant)
    body, breakdown = encode_message(q, cfg.to_dict())
    breakdown["grid_bits"] = grid_bits
    decoded_q, _ = decode_message(body)
    state = decoded_state(decoded_q)
    if state_sha256(state) != state_sha256(decoded_state(q)):
        raise RuntimeError("quantize: the message does not decode to the quantized state (bug)")
    return write_compressed(
        out, method=spec, decoder="quant", source=source_record("run", run), files={PAYLOAD: body},
        breakdown=breakdown, decoded_sha256=state_sha256(state), force=force,
        training_stores=training_stores_record(run, out, store),
        num_coded_params=q.num_symbols, frozen_params=counts["frozen"], quant=quant.to_dict(),
        relative_error=q.stats["relative_error"], seed=seed, model_config=cfg.to_dict(), **extra)


# -- data --------------------------------------------------------------------------------------------------
def run_data_store(run: Path) -> Path | None:
    """The TokenStore a Run was trained on, as recorded in its manifest or config (None if not recorded).

    The recorded path is relative to the run (``artifacts.path_record``; older runs: to the directory the
    training command ran in); its absolute hint is used only if the store there has the recorded sha256.
    """
    from ..artifacts import resolve_recorded_path

    man = read_manifest(run)
    candidates: list[Any] = [man.get("data"), man.get("data_path"), man.get("store")]
    cfg_path = run / "config.json"
    if cfg_path.exists():
        cfg = read_json(cfg_path, "config.json")
        candidates += [cfg.get("data"), (cfg.get("train") or {}).get("data") if isinstance(cfg.get("train"), dict)
                       else None]
    for c in candidates:
        if not isinstance(c, (dict, str)):
            continue
        try:
            return resolve_recorded_path(c, run, "data", sha256=c.get("sha256") if isinstance(c, dict) else None,
                                         identify=lambda p: read_manifest(p).get("sha256"))
        except TokenboundError:
            continue
    return None


def open_training_store(run: Path, data: str | Path | None):
    """``--data`` if given, else the run's recorded training store; one-line error if neither is available."""
    from ..data.store import TokenStore

    vocab = _run_vocab_size(run)
    if data is not None:
        return TokenStore.open(Path(data), check=True).check("--data", vocab_size=vocab)
    recorded = run_data_store(run)
    if recorded is None:
        raise TokenboundError(f"--data: needed (the run {run} does not record a training store that exists here)")
    return TokenStore.open(recorded, check=True).check("--data", vocab_size=vocab)


def _run_vocab_size(run: Path) -> int | None:
    """The vocabulary of a Run's model, from its config.json (None if not recorded)."""
    cfg_path = Path(run) / "config.json"
    model = read_json(cfg_path, "config.json").get("model") if cfg_path.exists() else None
    return int(model["vocab_size"]) if isinstance(model, dict) and "vocab_size" in model else None


def training_stores_record(run: Path, out: Path, used: Any = None) -> list[dict[str, Any]]:
    """The stores a model compressed from `run` into `out` has seen: the run's training store (its recorded
    sha256), the stores its base Run saw (a fine-tune's ``inherited_stores``) and the store `used` by the
    compressor itself (level grid, QAT), for held-out checks (docs/theory.md §10). Paths are recorded relative
    to `out` (artifacts.path_record)."""
    stores: list[dict[str, Any]] = []
    data = read_manifest(run).get("data")
    if isinstance(data, dict) and data.get("sha256"):
        located = run_data_store(run)
        stores.append({"role": "training", "sha256": data["sha256"],
                       **({} if located is None else path_record(located, out))})
    from ..train.init import relocated_stores

    stores += [e for e in relocated_stores(run, out) if all(s["sha256"] != e["sha256"] for s in stores)]
    if used is not None and all(e["sha256"] != used.sha256 for e in stores):
        stores.append({"role": "compression (level grid / QAT)", "sha256": used.sha256,
                       **path_record(used.path, out)})
    return stores


def heldout_store(path: Path):
    """The store's ``val/`` split if it has one, else the store itself (taken to be held out)."""
    from ..data.store import TokenStore

    store = TokenStore.open(path)
    return (store.val or store).check("--eval-data")


def bits_per_token(model, store, num_tokens: int, seed: int = 0) -> dict[str, Any]:
    """Mean loss in bits per token of a LanguageModel on fixed windows of `store`.

    Windows of ``min(max_context, 256)`` tokens (fewer if the store is small) at seeded random offsets; every
    position of a window is a target, under the model's own context rule (a GPT's ``config.context``; the
    document-aware ``doc`` rule otherwise). A quick before/after comparison, not a bound.
    """
    from ..train.batches import batch_at

    block = min(int(model.max_context or 256), 256, max(store.num_tokens - 1, 1))
    if store.num_tokens < 2:
        raise TokenboundError(f"--eval-data {store.path}: holds {store.num_tokens} tokens, too few to evaluate")
    context = getattr(getattr(model, "config", None), "context", "doc")
    context = context if context in ("doc", "stream") else "doc"
    rows = max(1, math.ceil(num_tokens / block))
    batch = 8
    total_bits, count = 0.0, 0
    for step in range(math.ceil(rows / batch)):
        x, y, seg = batch_at(store, block, min(batch, rows - step * batch), seed, step, context)
        lp = model.log_probs(x, seg)
        nll = -lp.gather(-1, y.to(lp.device).unsqueeze(-1)).squeeze(-1).double()
        total_bits += float(nll.sum()) / math.log(2)
        count += y.numel()
    return {"bits_per_token": total_bits / count, "tokens": count, "block": block, "seed": seed, "context": context}


def evaluate_before_after(src: Path, out: Path, eval_data: Path, num_tokens: int, device: str) -> dict[str, Any]:
    """Held-out bits per token of the source model and of the decoded CompressedModel on the same windows."""
    from ..models.loading import load

    store = heldout_store(eval_data)
    before_model = load(src, device=device)
    if before_model.vocab_size != store.vocab_size:
        raise TokenboundError(f"--eval-data {eval_data}: vocabulary {store.vocab_size} differs from the model's "
                              f"{before_model.vocab_size}")
    before = bits_per_token(before_model, store, num_tokens)
    del before_model
    after = bits_per_token(load(out, device=device), store, num_tokens)
    return {"store": str(store.path), "before": before["bits_per_token"], "after": after["bits_per_token"],
            "tokens": before["tokens"], "block": before["block"]}


def print_summary(summary: dict[str, Any], file=None) -> None:
    """The short human summary the CLI prints (stdout by default)."""
    file = file or sys.stdout
    bd = summary["breakdown"]
    bpp = summary.get("bits_per_coded_param")
    print(f"wrote {summary['out']}  ({summary['method']}, {summary['seconds']} s)", file=file)
    print(f"message length: {summary['message_bits']:.0f} bits ({summary['message_bits'] / 8 / 1024:.1f} KiB)"
          + (f", {bpp:.4f} bits per coded parameter ({summary['num_coded_params']} params)" if bpp else ""),
          file=file)
    print("  payload {payload_bits:.0f} + header {header_bits:.0f} + prefix {prefix_bits:.0f} + grid {grid_bits:.2f}"
          .format(**bd), file=file)
    if summary.get("extra_bits"):
        print(f"  extra bits to pay in the bound: {summary['extra_bits']}", file=file)
    ev = summary.get("eval")
    if ev:
        print(f"held-out bits per token ({ev['tokens']} tokens of {ev['store']}): before {ev['before']:.4f}, "
              f"after {ev['after']:.4f}", file=file)


def source_record(source_type: str, src: Path) -> dict[str, Any]:
    """{"type", "path", "sha256"} of the source (a directory hashes all its files)."""
    digest = sha256_dir(src) if src.is_dir() else sha256_file(src)
    return {"type": source_type, "path": str(src), "sha256": digest}
