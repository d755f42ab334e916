"""The scorer (docs/design.md §1): model + TokenStore + context rule + sampling plan → TokenStats.

``score`` draws the whole plan from the seed first, splits the draws into shards of ``shard_size``, scores the
shards not yet on disk (resumable after any interruption, even kill -9: shards are written atomically), and merges
them in shard order. Under torchrun, shard k is scored by rank k mod W and rank 0 writes the merged file; every
rank returns the same TokenStats. The merged result is bit-identical however often the run was interrupted.

Invariants: every number is a function of (model, store, rule, sampler, n, seed, shard_size) only; positions of
one draw share a draw id; under the block sampler each position's numbers equal the token sampler's for the same
position and rule (both read exactly the rule's context; padding is causal-safe, see evaluate.forward).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..bounds.stats import TokenStats
from ..bounds.topk import RANK_RULE
from ..coding.hashing import state_sha256
from ..data.context import ContextRule, eot_doc_offsets
from ..data.sampling import SamplingPlan, check_sampler, draw_plan, plan_rows
from ..data.store import TokenStore
from ..errors import TokenboundError
from ..fmt import plural
from ..models.base import LanguageModel
from ..progress import Progress
from .distributed import local_device, process_group
from .forward import score_rows
from .shards import STATS_FILE, claim_dir, describe_json, merge_shards, plan_sha256, read_shard, shard_path, write_shard

FORMAT = 1


def model_id(model: LanguageModel) -> str:
    """A content id for a model: sha256 of its description and, when it has one, its state_dict's state_sha256."""
    state = None
    for holder in (model, getattr(model, "module", None), getattr(model, "model", None)):
        sd = getattr(holder, "state_dict", None)
        if callable(sd):
            state = state_sha256(sd())
            break
    blob = json.dumps({"describe": describe_json(model.describe()), "state": state}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_inputs(model: LanguageModel, store: TokenStore, rule: ContextRule, sampler: str, n: int,
                 batch_size: int, shard_size: int) -> None:
    check_sampler(sampler, rule)
    if int(n) != n or n <= 0:
        raise TokenboundError(f"the number of draws must be a positive integer, got {n}", param="n")
    if int(model.vocab_size) != store.vocab_size:
        raise TokenboundError(f"{store.path}: store vocabulary has {store.vocab_size} tokens but the model's has "
                              f"{model.vocab_size}")
    if model.max_context is not None and rule.block > int(model.max_context):
        raise TokenboundError(f"{rule}: block size {rule.block} exceeds the model's maximum context "
                              f"{model.max_context}", param="rule")
    if batch_size < 1:
        raise TokenboundError(f"must be >= 1, got {batch_size}", param="batch_size")
    if shard_size < 1:
        raise TokenboundError(f"must be >= 1, got {shard_size}", param="shard_size")
    if store.num_tokens == 0:
        raise TokenboundError(f"{store.path}: the token store is empty, nothing to score")


def score(model: LanguageModel, store: TokenStore, rule: ContextRule | str, sampler: str, n: int, seed: int, *,
          out_dir: Path, batch_size: int = 8, device: str = "cpu", shard_size: int = 256, progress: bool = True,
          model_sha256: str | None = None) -> TokenStats:
    """Score n draws of `sampler` under `rule`; shards and the merged ``tokenstats.npz`` go to `out_dir`.

    `batch_size` is the number of rows per forward pass (a row is one context under the token sampler, one
    window under block/document). `model_sha256` (e.g. the artifact's hash) identifies the model in the
    fingerprint; by default it is derived from the model's description and weights (``model_id``).
    """
    rule = ContextRule.parse(rule)
    check_inputs(model, store, rule, sampler, n, batch_size, shard_size)
    out_dir = Path(out_dir)
    m = store.num_tokens
    mid = model_sha256 or model_id(model)
    fingerprint = {"format": FORMAT, "model": mid, "store_sha256": store.sha256, "context_rule": str(rule),
                   "sampler": sampler, "n": int(n), "seed": int(seed), "shard_size": int(shard_size),
                   "rank_rule": RANK_RULE}  # shards ranked under another rule are refused, never mixed in
    plan, context_offsets = scoring_plan(store, rule, sampler, n, seed)
    num_shards = -(-plan.n // shard_size)
    device = local_device(device)
    model = model.to(device)

    with process_group(device) as group:
        fp_sha = claim_dir(out_dir, fingerprint, write=True) if group.rank == 0 else ""
        group.barrier()
        if group.rank != 0:
            fp_sha = claim_dir(out_dir, fingerprint, write=False)
        todo, done = {}, 0
        for k in range(num_shards):
            if not group.owns(k):
                continue
            path = shard_path(out_dir, k)
            if path.exists():
                read_shard(path, fp_sha)  # refuses a foreign or broken shard now rather than at merge
                done += 1
                continue
            todo[k] = plan_rows(plan, rule, range(k * shard_size, min((k + 1) * shard_size, plan.n)), m,
                                context_offsets, store.doc_offsets)
        total = sum(r.num_scored for r in todo.values())
        report = progress and group.rank == 0
        if report and done:
            print(f"resuming: {done} of {plural(done + len(todo), 'shard')} already scored in {out_dir}",
                  file=sys.stderr, flush=True)
        with Progress(total, f"score {sampler} {rule}", "tok", enabled=report) as bar:
            for k, rows in todo.items():
                scored = score_rows(model, store.tokens, store.eot, rows, use_segments=rule.is_doc,
                                    batch_size=batch_size, device=device, bar=bar)
                write_shard(shard_path(out_dir, k), scored, fp_sha)
        group.barrier()
        merged = merge_shards(out_dir, num_shards, fp_sha)
        stats = TokenStats(merged.positions, merged.prob, merged.rank, merged.entropy_bits, merged.draw,
                           meta=stats_meta(plan, rule, store, model, mid, fp_sha))
        stats.validate(where=str(out_dir))
        if group.rank == 0:
            stats.save(out_dir / STATS_FILE)
    return stats


def scoring_plan(store: TokenStore, rule: ContextRule, sampler: str, n: int, seed: int
                 ) -> tuple[SamplingPlan, np.ndarray]:
    """(the sampling plan, the document starts that define the rule's contexts) of a scoring run.

    ``plan_rows(plan, rule, draws, store.num_tokens, context_offsets, store.doc_offsets)`` then gives exactly the
    rows `score` feeds the model for those draws (`tokenbound verify` re-scores draws this way).
    """
    plan = draw_plan(sampler, int(n), int(seed), rule, store.num_tokens, store.doc_offsets)
    # The doc rule is defined by eot tokens; equal to store.doc_offsets when the store keeps its invariant.
    context_offsets = eot_doc_offsets(store.tokens, store.eot) if rule.is_doc else np.zeros(1, np.int64)
    return plan, context_offsets


def stats_meta(plan, rule: ContextRule, store: TokenStore, model: LanguageModel, mid: str, fp_sha: str
               ) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "sampler": plan.sampler, "context_rule": str(rule), "seed": plan.seed,
        "population_tokens": store.num_tokens, "vocab_size": store.vocab_size, "num_draws": plan.n,
        "sampler_params": plan.describe(), "context": rule.describe(), "plan_sha256": plan_sha256(plan.units),
        "model_sha256": mid, "model": describe_json(model.describe()), "store_sha256": store.sha256,
        "store_path": str(store.path), "fingerprint_sha256": fp_sha, "rank_rule": RANK_RULE,
    }
    if plan.sampler in ("block", "all"):
        meta["population_windows"] = plan.population
    if plan.sampler == "document":
        meta["population_documents"] = plan.population
        meta["window_alignment"] = "document"  # windows are laid over each document alone
    return meta


__all__ = ["score", "model_id"]
