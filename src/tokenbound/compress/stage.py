"""`tokenbound compress`: a model -> a CompressedModel with a verified, itemised message length
(docs/compression.md, docs/pretrained.md).

Methods (``--method SPEC``, parsed by ``coding.compressed.parse_method``):
- ``quant:levels=11[,scope=tensor|global][,codebook=kmeans|uniform][,stream=tensor|joint][,clip=Q][,iters=N]``
  codebook quantization of a trained Run's coded tensors (``compress.run``, codec ``coding.quantize``);
  ``grid=5/7/11/15`` instead of ``levels`` picks the level count by a two-part code length and pays for it.
- ``qat:levels=11,steps=300[,lr=1e-4,codebook_lr=..,batch=16,optimizer=adam|sgd]`` quantization-aware
  training on the training store (``compress.qat``), then the same code as ``quant``.
- ``ptq:...`` for ``--hf``/``--gguf`` (``compress.ptq.compress_pretrained``) and ``archive`` for any source
  (``compress.archive.compress_archive``).

Every CompressedModel written here is decoded back from disk (``models.decoders.decode_state``: sha256 of every file,
then the state hash) before this returns, so a reported message length always has a working decoder.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..coding.compressed import parse_method
from ..data.store import TokenStore
from ..errors import TokenboundError
from ..evaluate.loss import bits_per_token
from ..models.decoders import decode_state
from ..models.hf import check_safetensors_weights
from ..models.loading import load
from .archive import compress_archive
from .ptq import compress_pretrained
from .run import compress_run

SOURCE_TYPES = ("run", "hf", "gguf")  # each is the name of its parameter (and --flag) of the compress verb
EVAL_TOKENS = 4096


METHOD_EXAMPLES = {"quant": "quant:levels=11", "qat": "qat:levels=11,steps=300",
                   "ptq": "ptq:bits=2,group=64,algo=gptq", "archive": "archive"}


def check_method_name(method_spec: str) -> None:
    """A one-line error listing the valid methods when the spec does not start with one (before its parameters
    are parsed, so `zip:9` is called an unknown method, not a malformed parameter list)."""
    name = str(method_spec).partition(":")[0].strip()
    if name and name not in METHOD_EXAMPLES:
        raise TokenboundError(f"unknown method {name!r}; valid methods: " + ", ".join(METHOD_EXAMPLES.values())
                              + " (docs/compression.md)", param="method", value=method_spec)


def compress(source_type: str, source_path: str | Path, method_spec: str, out: str | Path,
             data: str | Path | None = None, force: bool = False, seed: int = 0, *,
             eval_data: str | Path | None = None, eval_tokens: int = EVAL_TOKENS, device: str = "cpu",
             progress: bool = True) -> dict[str, Any]:
    """Compress `source_path` (a Run, a Hugging Face directory or a .gguf file) with `method_spec` into `out`.

    Returns a summary: the manifest's message_bits, bits_per_coded_param and breakdown, plus (with
    `eval_data`, a TokenStore whose ``val/`` split, or itself, is held out) bits per token before and after.
    """
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"source_type must be one of {sorted(SOURCE_TYPES)}, got {source_type!r}")
    src = Path(source_path)
    if not src.exists():
        raise TokenboundError("no such file or directory", param=source_type, value=src)
    check_method_name(method_spec)
    if eval_data is not None:
        heldout_store(Path(eval_data))  # a bad --eval-data is refused before any work
    if source_type == "hf" and src.is_dir() and (src / "config.json").exists():
        check_safetensors_weights(src)  # before any copy, so the message names the user's directory
    name, params = parse_method(method_spec)
    out = Path(out)
    if out.exists() and not force:
        raise TokenboundError("already exists (use --force to overwrite)", param="out", value=out)
    started = time.time()
    if name in ("quant", "qat"):
        if source_type != "run":
            raise TokenboundError(f"{name} compresses a trained Run; use --run (for pretrained models use ptq:... "
                                  f"or archive)", param="method", value=method_spec)
        compress_run(src, out, name, params, method_spec, data=data, force=force, seed=seed, device=device,
                     progress=progress)
    elif name == "ptq":
        if source_type == "run":
            raise TokenboundError("ptq is for pretrained models (--hf/--gguf); use quant:/qat: for a Run",
                                  param="method", value=method_spec)
        if data is not None:
            TokenStore.open(Path(data), check=True)  # hash and id range before calibrating on it
        compress_pretrained(src, out, params, None if data is None else Path(data), force, seed, device=device)
    elif name == "archive":
        if params:
            raise TokenboundError("archive takes no parameters", param="method", value=method_spec)
        compress_archive(src, out, force)
    else:
        raise TokenboundError(f"unknown method {name!r} (quant, qat, ptq, archive)", param="method",
                              value=method_spec)
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


def heldout_store(path: Path) -> TokenStore:
    """The store's ``val/`` split if it has one, else the store itself (taken to be held out)."""
    store = TokenStore.open(path)
    return (store.val or store).check("eval_data")


def evaluate_before_after(src: Path, out: Path, eval_data: Path, num_tokens: int, device: str) -> dict[str, Any]:
    """Held-out bits per token of the source model and of the decoded CompressedModel on the same windows."""
    store = heldout_store(eval_data)
    before_model = load(src, device=device)
    if before_model.vocab_size != store.vocab_size:
        raise TokenboundError(f"vocabulary {store.vocab_size} differs from the model's {before_model.vocab_size}",
                              param="eval_data", value=eval_data)
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
