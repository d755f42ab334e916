"""Monte Carlo validity harness (`tokenbound validate`): do the bounds hold at their advertised rate?

One trial: draw a training stream of m tokens from a source with a known next-token distribution
(validate/sources.py), fit a k-th order Markov model on it (models/markov.py, doc rule), score it exactly,
sample n positions uniformly with replacement (or take every position once, n = 0), certify with the
model's real code length (bounds/certificate.certify), and compare each method's bound with the EXACT true
risk of the α-smoothed model at the α that method chose:

    R(h) = (1/m) Σ_i Σ_v P_true(v | x_<i)·(−log2((1 − α)·p_θ(v | c_i) + α/V)).

A trial fails for a method when bound < R(h). A valid method fails in at most a δ fraction of trials (up to
Monte Carlo error: the report gives a Clopper–Pearson interval). The ``broken`` method, a deliberately
invalid bound — Theorem A with its complexity term deleted, i.e. the exact training loss R̂(h) on the whole
stream at the α Azuma chose — must fail often whenever the model has anything to overfit: proof that the
harness can fail.

Top-k errors (``top_k``) are checked the same way: the certificate's top-k error bound against the exact top-k
risk of the fitted model's prediction sets S_k(c) (the k tokens first in (p_θ desc, id asc) order,
docs/theory.md §8),

    R_k(h) = (1/m) Σ_i P_true(x_i ∉ S_k(c_i) | x_<i) = (1/m) Σ_i Σ_{v ∉ S_k(c_i)} P_true(v | x_<i).

The sets are built here from the model's distributions, independently of the ranks the scorer stored, so a
scorer that credits ties to the model is caught where exact ties are common (the ``shuffle`` source).

Determinism: source parameters come from ``seed``; trial t uses SeedSequence(seed).spawn(trials)[t] for its
stream and its sampler; results do not depend on the number of worker processes.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..bounds.certificate import default_pilot_draws
from ..bounds.schema import CertifyInputs
from ..bounds.stats import TokenStats
from ..bounds.topk import RANK_RULE, rank_table
from ..errors import TokenboundError
from ..models.markov import MarkovModel
from .sources import Source, make_source

VALIDATE_CONTROL = "markov:0"  # validate's control variate: a unigram fitted on each trial's stream

CERTIFIED_METHODS = ("azuma", "variance_adaptive")
METHODS = CERTIFIED_METHODS + ("broken",)
DEFAULT_TOP_K = (1, 3)


def check_top_k(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(dict.fromkeys(int(k) for k in ks))
    if any(k < 1 for k in out):
        raise TokenboundError(f"every k must be >= 1, got {', '.join(map(str, out))}", param="top_k")
    return out


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    out = tuple(m.strip() for m in methods if m.strip())
    if not out:
        raise TokenboundError("at least one method is needed", param="methods")
    for m in out:
        if m not in METHODS:
            raise TokenboundError(f"unknown method {m!r}; expected some of {', '.join(METHODS)}", param="methods")
    return tuple(dict.fromkeys(out))


def _per_context(model: MarkovModel, tokens: np.ndarray, doc_offsets: np.ndarray, true_probs: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_θ(· | c), Σ_i P_true(· | x_<i), counts of x_i) per distinct context c of the stream: [C, V] each."""
    v = true_probs.shape[1]
    uniq, inv = np.unique(model.keys_for(tokens, doc_offsets), return_inverse=True)
    dist = model.next_token_probs(uniq)
    mass = np.stack([np.bincount(inv, weights=true_probs[:, j], minlength=uniq.size) for j in range(v)], 1)
    seen = np.zeros((uniq.size, v))
    np.add.at(seen, (inv, tokens), 1.0)
    return dist, mass, seen


def true_top_k_risk(model: MarkovModel, tokens: np.ndarray, doc_offsets: np.ndarray, true_probs: np.ndarray,
                    ks: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(exact top-k risk R_k(h), exact training top-k error) for each k, under the doc rule (module docstring)."""
    dist, mass, seen = _per_context(model, tokens, doc_offsets, true_probs)
    ranks = rank_table(dist)                                              # place of every token, ties by id
    m = true_probs.shape[0]
    miss = [ranks > k for k in ks]
    return (np.array([float(mass[w].sum() / m) for w in miss]),
            np.array([float(seen[w].sum() / m) for w in miss]))


def true_risk_bits(model: MarkovModel, tokens: np.ndarray, doc_offsets: np.ndarray, true_probs: np.ndarray,
                   alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact R(h), exact training loss R̂(h)) in bits per token for each α, under the doc rule.

    Positions sharing a context share p_θ(· | c), so P_true is summed per distinct context first.
    """
    m, v = true_probs.shape
    dist, mass, seen = _per_context(model, tokens, doc_offsets, true_probs)
    risks, train = np.empty(len(alphas)), np.empty(len(alphas))
    for a, alpha in enumerate(alphas):
        loss = -np.log2((1.0 - alpha) * dist + alpha / v)                  # [C, V]
        risks[a] = float((mass * loss).sum() / m)
        train[a] = float((seen * loss).sum() / m)
    return risks, train


def _token_stats(model: MarkovModel, tokens: np.ndarray, doc_offsets: np.ndarray, n: int,
                 rng: np.random.Generator, seed: int, control: str = "none") -> TokenStats:
    m = tokens.size
    # draw order is kept: the betting bound's bets are predictable in it (sorting would break that)
    positions = np.arange(m) if n == 0 else rng.integers(0, m, n)
    prob, rank, ent = model.score_positions(tokens, doc_offsets, positions)
    stats = TokenStats(positions=positions, prob=prob, rank=rank, entropy_bits=ent, draw=np.arange(positions.size),
                       meta={"sampler": "token", "context_rule": model.context_rule, "seed": seed,
                             "population_tokens": m, "vocab_size": model.vocab_size, "rank_rule": RANK_RULE})
    if control == "none":
        return stats
    from ..evaluate.control import stream_bits, with_control

    return with_control(stats, stream_bits(tokens, doc_offsets, model.vocab_size, model.eot, control), control)


def run_trial(source: Source, *, trial_seed: int, tokens: int, samples: int, order: int, smoothing: str,
              methods: Sequence[str], delta: float, certify_fn=None, subsample_ci: str = "betting",
              control: str = "none", pilot_draws: int = 0, top_k: Sequence[int] = ()) -> dict[str, Any]:
    """One trial; returns {method: {bound, risk, alpha, covered}}, {k: {bound, risk, train, covered}} under
    "top_k", and the model's message bits."""
    if certify_fn is None:
        from ..bounds.certificate import certify as certify_fn
    rng = np.random.default_rng(trial_seed)
    stream = source.sample(rng, tokens)
    model = MarkovModel.fit(stream.tokens, stream.doc_offsets, source.vocab_size, source.eot, order, smoothing)
    stats = _token_stats(model, stream.tokens, stream.doc_offsets, samples, rng, trial_seed, control)
    certified = tuple(m for m in methods if m in CERTIFIED_METHODS) or ("azuma",)  # broken needs Azuma's α
    options = {} if subsample_ci is None else {"subsample_ci": subsample_ci, "pilot_draws": pilot_draws}
    cert = certify_fn(stats, CertifyInputs(message_bits=model.message_bits, message_prefix_free=True, delta=delta,
                                           methods=certified, top_k=tuple(top_k), **options))
    grid = np.asarray(cert.inputs.alpha_grid, dtype=np.float64)
    risks, train = true_risk_bits(model, stream.tokens, stream.doc_offsets, stream.true_probs, grid)
    out: dict[str, Any] = {"seed": trial_seed, "message_bits": model.message_bits, "methods": {}}
    for name in methods:
        entry = cert.bounds["azuma" if name == "broken" else name]
        a = int(np.flatnonzero(grid == entry.alpha)[0])
        bound = float(train[a]) if name == "broken" else float(entry.bound_bits_per_token)
        out["methods"][name] = {"bound": bound, "risk": float(risks[a]), "alpha": float(grid[a]),
                                "covered": bool(bound >= risks[a])}
    if top_k:
        k_risk, k_train = true_top_k_risk(model, stream.tokens, stream.doc_offsets, stream.true_probs, top_k)
        out["top_k"] = {}
        for j, k in enumerate(top_k):
            bound = float(cert.top_k[k].bound_bits_per_token)  # an error rate, despite the name
            out["top_k"][str(k)] = {"bound": bound, "risk": float(k_risk[j]), "train": float(k_train[j]),
                                    "covered": bool(bound >= k_risk[j])}
    return out


def clopper_pearson(failures: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for a failure rate."""
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if failures == 0 else float(beta.ppf(a, failures, trials - failures + 1))
    hi = 1.0 if failures == trials else float(beta.ppf(1 - a, failures + 1, trials - failures))
    return lo, hi


def summarize(results: list[dict[str, Any]], methods: Sequence[str], delta: float) -> dict[str, Any]:
    out = {}
    t = len(results)
    for name in methods:
        rows = [r["methods"][name] for r in results]
        fails = sum(not r["covered"] for r in rows)
        slack = np.array([r["bound"] - r["risk"] for r in rows])
        lo, hi = clopper_pearson(fails, t)
        out[name] = {"failures": fails, "failure_rate": fails / t, "failure_rate_ci95": [lo, hi],
                     "consistent_with_delta": lo <= delta, "mean_slack_bits": float(slack.mean()),
                     "min_slack_bits": float(slack.min()),
                     "mean_bound_bits": float(np.mean([r["bound"] for r in rows])),
                     "mean_true_risk_bits": float(np.mean([r["risk"] for r in rows])),
                     "alphas": {f"{a:g}": int(c) for a, c in zip(*np.unique([r["alpha"] for r in rows],
                                                                           return_counts=True))}}
    return out


def summarize_top_k(results: list[dict[str, Any]], ks: Sequence[int], delta: float) -> dict[str, Any]:
    """Per k: failures of the top-k error bound against the exact top-k risk, as ``summarize`` does."""
    out = {}
    t = len(results)
    for k in ks:
        rows = [r["top_k"][str(k)] for r in results]
        fails = sum(not r["covered"] for r in rows)
        lo, hi = clopper_pearson(fails, t)
        slack = np.array([r["bound"] - r["risk"] for r in rows])
        out[str(k)] = {"failures": fails, "failure_rate": fails / t, "failure_rate_ci95": [lo, hi],
                       "consistent_with_delta": lo <= delta, "mean_bound": float(np.mean([r["bound"] for r in rows])),
                       "mean_true_risk": float(np.mean([r["risk"] for r in rows])),
                       "mean_train_error": float(np.mean([r["train"] for r in rows])),
                       "mean_slack": float(slack.mean()), "min_slack": float(slack.min())}
    return out


def _trial_worker(job: tuple) -> dict[str, Any]:
    spec, source_seed, kwargs = job
    return run_trial(make_source(spec, source_seed), **kwargs)


def validate(source: str = "markov", *, trials: int = 100, tokens: int = 10_000, samples: int = 2_000,
             order: int = 1, smoothing: str = "wb", methods: Sequence[str] = METHODS, delta: float = 0.05,
             seed: int = 0, workers: int = 1, progress: bool = True, certify_fn=None,
             subsample_ci: str = "betting", control: str = VALIDATE_CONTROL, pilot_draws: int | None = None,
             top_k: Sequence[int] = DEFAULT_TOP_K) -> dict[str, Any]:
    """Run `trials` trials and summarise coverage per method and per top-k (module docstring). JSON-ready dict.

    `control` ("markov:0" | "markov:1" | "none"): control variate fitted on each trial's stream, used with the
    betting bound; `pilot_draws` (default: a tenth of the samples from 200 on) choose α and λ (certify).
    """
    from ..progress import Progress

    methods = check_methods(methods)
    top_k = check_top_k(top_k)
    for name, value, least in (("trials", trials, 1), ("tokens", tokens, 2), ("samples", samples, 0),
                               ("order", order, 0), ("workers", workers, 1)):
        if value < least:
            raise TokenboundError(f"must be >= {least}, got {value}", param=name)
    if not 0 < delta < 1:
        raise TokenboundError(f"must be in (0, 1), got {delta}", param="delta")
    from ..evaluate.control import check_control_spec

    check_control_spec(control)
    if subsample_ci != "betting":
        control = "none"
    if pilot_draws is None:
        pilot_draws = default_pilot_draws(samples)
    src = make_source(source, seed)
    seeds = [int(s.generate_state(1, np.uint64)[0] >> np.uint64(1))
             for s in np.random.SeedSequence(seed).spawn(trials)]
    common = {"tokens": tokens, "samples": samples, "order": order, "smoothing": smoothing, "methods": methods,
              "delta": delta, "subsample_ci": None if certify_fn is not None else subsample_ci,
              "control": "none" if certify_fn is not None else control, "pilot_draws": pilot_draws,
              "top_k": top_k}
    bar = Progress(trials, f"validate {src.spec}", "trial", enabled=progress)
    results: list[dict[str, Any]] = []
    if workers == 1 or certify_fn is not None:
        for s in seeds:
            results.append(run_trial(src, trial_seed=s, certify_fn=certify_fn, **common))
            bar.update()
    else:
        import multiprocessing as mp

        jobs = [(source, seed, {**common, "trial_seed": s}) for s in seeds]
        with mp.get_context("spawn").Pool(min(workers, os.cpu_count() or 1)) as pool:
            for r in pool.imap(_trial_worker, jobs, chunksize=max(1, trials // (8 * workers))):
                results.append(r)
                bar.update()
    bar.close()
    return {
        "source": src.describe(), "trials": trials, "tokens": tokens,
        "samples": samples if samples else "all", "subsample_ci": subsample_ci, "control_variate": control,
        "pilot_draws": pilot_draws, "order": order, "smoothing": smoothing, "delta": delta,
        "seed": seed, "trial_seeds": "SeedSequence(seed).spawn(trials)",
        "mean_message_bits": float(np.mean([r["message_bits"] for r in results])),
        "methods": summarize(results, methods, delta),
        "top_k": summarize_top_k(results, top_k, delta),
        "rank_rule": RANK_RULE,
        "notes": "failure: bound < exact true risk R(h) of the alpha-smoothed model at the alpha the method chose;"
                 " a valid method has failure_rate <= delta up to Monte Carlo error (failure_rate_ci95);"
                 " 'broken' is deliberately invalid (training loss, no complexity term) and should fail often;"
                 " top_k: the top-k error bound against the exact top-k risk of the prediction sets (ties by id).",
    }
