"""certify / recompute / compare: the certificate schema, worked examples, input checks, bookkeeping."""
import json
import math

import numpy as np
import pytest

from tokenbound.bounds import Certificate, CertifyInputs, TokenStats, compare, recompute
from tokenbound.bounds import certify as certify_typed
from tokenbound.bounds.breakeven import azuma_break_even_closed_form
from tokenbound.bounds.smoothing import smoothed_loss_bits
from tokenbound.errors import TokenboundError

REQUIRED = ("schema", "bound_bits_per_token", "method", "random_guess_bits", "vacuous", "terms", "inputs", "bounds",
            "top_k_error_bounds", "bits_per_byte", "model", "data")
REQUIRED_INPUTS = ("num_tokens", "sample_size", "vocab_size", "delta", "delta_split", "alpha", "alpha_grid",
                   "message_bits", "extra_bits", "context_rule", "sampler", "seed", "heldout")


def make_stats(prob, *, m=100, vocab=4, rank=None, entropy=None, draw=None, sampler="token", **meta):
    prob = np.asarray(prob, dtype=float)
    n = prob.size
    return TokenStats(positions=np.arange(n), prob=prob, rank=np.ones(n, int) if rank is None else rank,
                      entropy_bits=np.ones(n) if entropy is None else entropy,
                      draw=np.arange(n) if draw is None else draw,
                      meta={"sampler": sampler, "context_rule": "doc:1024", "seed": 0, "population_tokens": m,
                            "vocab_size": vocab, **meta})


def synthetic(n=2000, m=10**6, vocab=8192, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    # a plausible, predictable-looking entropy (generated independently of the true token's p)
    ent = rng.gamma(4.0, 0.5, n)
    return make_stats(p, m=m, vocab=vocab, rank=rng.geometric(0.3, n), entropy=ent)


def certify(stats, *, document_stats=None, model=None, data=None, provenance=None, **inputs):
    """The certificate's JSON dict (the schema these tests check) for `inputs` (CertifyInputs fields)."""
    cert = certify_typed(stats, CertifyInputs(**inputs), document_stats=document_stats, model=model, data=data,
                         provenance=provenance)
    assert isinstance(cert, Certificate)
    return cert.to_json()


def roundtrip(cert):
    return json.loads(json.dumps(cert))


def test_worked_example_single_method_single_alpha():
    # V = 4, α = 0.5, p = 1 everywhere: ℓ = −log2(0.5 + 0.125) = 0.6780719 bits, Δ = log2 5 = 2.3219281.
    # n = 4 draws, m = 100, δ = 0.05 split equally (δ1 = δ2 = 0.025), L = 10 bits (+0 α bits, +0 method bits):
    # complexity = 2.3219281·sqrt((10·ln 2 + ln 40)/200) = 2.3219281·0.2304383 = 0.5350609
    # subsample  = 2.3219281·sqrt(ln 40/8) = 2.3219281·0.6790515 = 1.5767070
    # bound = 0.6780719 + 0.5350609 + 1.5767070 = 2.7898398 >= log2 4 = 2: vacuous.
    cert = certify(make_stats([1.0] * 4), message_bits=10, delta_split="equal", alpha_grid=[0.5],
                   methods=("azuma",), top_k=(), azuma_ci="hoeffding")
    b = cert["bounds"]["azuma"]
    assert b["terms"]["empirical_bits"] == pytest.approx(0.6780719, rel=1e-7)
    assert b["terms"]["complexity_bits"] == pytest.approx(0.5350609, rel=1e-7)
    assert b["terms"]["subsample_bits"] == pytest.approx(1.5767070, rel=1e-7)
    assert cert["bound_bits_per_token"] == pytest.approx(2.7898398, rel=1e-7)
    assert b["extra_bits"] == {"message": 10.0, "alpha_grid": 0.0, "method_choice": 0.0}
    assert cert["vacuous"] is True and cert["random_guess_bits"] == 2.0


def test_alpha_one_gives_exactly_log2_v_and_is_vacuous():
    # α = 1, V = 2: every smoothed loss is 1 bit and Δ = 0, so every term but the empirical one vanishes.
    cert = certify(make_stats([0.2, 0.9, 0.5], vocab=2), message_bits=1e6, alpha_grid=[1.0])
    for name in ("azuma", "variance_adaptive"):
        assert cert["bounds"][name]["bound_bits_per_token"] == pytest.approx(1.0, rel=1e-12)
    assert cert["vacuous"] is True
    assert cert["break_even_tokens"] == {"azuma": None, "variance_adaptive": None}


def test_top_k_worked_example():
    # ranks [1, 2, 11, 200]: top-1 errors 3/4, top-10 errors 2/4, top-100 errors 1/4. Δ = 1, no α choice.
    # δ1 = δ2 = 0.025, L = 10 bits, m = 100, n = 4: complexity 0.2304383, subsample sqrt(ln 40/8) = 0.6790515.
    cert = certify(make_stats([0.5] * 4, rank=np.array([1, 2, 11, 200])), message_bits=10, delta_split="equal")
    top = cert["top_k_error_bounds"]
    assert set(top) == {"1", "10", "100"}
    assert top["1"] == pytest.approx(0.75 + 0.2304383 + 0.6790515, rel=1e-6)
    assert top["10"] == pytest.approx(0.50 + 0.2304383 + 0.6790515, rel=1e-6)
    assert top["100"] == pytest.approx(0.25 + 0.2304383 + 0.6790515, rel=1e-6)
    assert cert["top_k"]["1"]["extra_bits"] == {"message": 10.0}


def test_schema_and_required_keys():
    cert = certify(synthetic(), message_bits=1e4, mean_bytes_per_token=3.5, model={"path": "m", "sha256": "ab"})
    for key in REQUIRED:
        assert key in cert
    for key in REQUIRED_INPUTS:
        assert key in cert["inputs"]
    assert cert["schema"] == "tokenbound.certificate/1" and cert["kind"] == "generalization bound"
    assert set(cert["terms"]) == {"empirical_bits", "complexity_bits", "subsample_bits"}
    assert cert["bits_per_byte"] == pytest.approx(cert["bound_bits_per_token"] / 3.5, rel=1e-15)
    json.dumps(cert, allow_nan=False)  # strictly serialisable
    for b in cert["bounds"].values():
        t = b["terms"]
        assert b["bound_bits_per_token"] == pytest.approx(
            t["empirical_bits"] + t["complexity_bits"] + t["subsample_bits"], rel=1e-12)
        assert b["alpha"] in cert["inputs"]["alpha_grid"]


def test_headline_is_best_paid_method():
    cert = certify(synthetic(), message_bits=1e4)
    best = min(cert["bounds"], key=lambda k: cert["bounds"][k]["bound_bits_per_token"])
    assert cert["method"] == best
    assert cert["bound_bits_per_token"] == cert["bounds"][best]["bound_bits_per_token"]
    for b in cert["bounds"].values():
        assert b["extra_bits"]["method_choice"] == 1.0  # log2 of 2 eligible methods
        assert b["extra_bits"]["alpha_grid"] == 3.0  # log2 of 8 α values
    assert cert["bounds"]["variance_adaptive"]["extra_bits"]["lambda_grid"] == pytest.approx(math.log2(14))
    # The subsampling events (one per α and method, and per λ for the variance-adaptive one) are covered
    # jointly: Azuma's 8 get δ_rest/(8·2) each, the variance-adaptive 8·14 get δ_rest/(8·2·14).
    n, m = 2000, 10**6
    rest = 0.05 * m / (n + m)
    az, va = cert["bounds"]["azuma"]["delta_shares"], cert["bounds"]["variance_adaptive"]["delta_shares"]
    assert az["subsample"] == pytest.approx(rest / 16, rel=1e-12)
    assert va["subsample"] == pytest.approx(rest / (16 * 14), rel=1e-12)
    assert cert["bounds"]["variance_adaptive"]["subsample_choices"] == 16 * 14
    total = az["main"] / 2 + va["main"] / 2 + 8 * az["subsample"] + 8 * 14 * va["subsample"]
    assert total == pytest.approx(0.05, rel=1e-12)  # martingale δ1 is split by the method bit in the prior
    single = certify(synthetic(), message_bits=1e4, methods=("azuma",))
    assert single["bounds"]["azuma"]["extra_bits"]["method_choice"] == 0.0
    assert single["bound_bits_per_token"] < cert["bounds"]["azuma"]["bound_bits_per_token"]


def test_prefix_and_caller_extra_bits_are_itemised_and_paid():
    plain = certify(synthetic(), message_bits=1000, methods=("azuma",))
    cert = certify(synthetic(), message_bits=1000, message_prefix_free=False, extra_bits={"quant_levels": 2.0},
                   methods=("azuma",))
    items = cert["bounds"]["azuma"]["extra_bits"]
    assert items["message_prefix"] == 19.0 and items["quant_levels"] == 2.0  # 2⌊log2 1000⌋ + 1 = 19
    assert cert["bounds"]["azuma"]["prior_bits"] == pytest.approx(1000 + 19 + 2 + 3 + 0)
    assert cert["bound_bits_per_token"] > plain["bound_bits_per_token"]


def test_monotone_in_message_delta_and_population():
    def bound(**kw):
        args = {"message_bits": 1e4, "delta": 0.05}
        m = kw.pop("m", 10**6)
        args.update(kw)
        return certify(synthetic(m=m), **args)["bounds"]

    for name in ("azuma", "variance_adaptive"):
        msg = [bound(message_bits=b)[name]["bound_bits_per_token"] for b in (0, 1e3, 1e5)]
        assert msg[0] < msg[1] < msg[2]
        dl = [bound(delta=d)[name]["bound_bits_per_token"] for d in (0.2, 0.05, 1e-4)]
        assert dl[0] < dl[1] < dl[2]
        ms = [bound(m=m)[name]["bound_bits_per_token"] for m in (10**5, 10**7, 10**9)]
        assert ms[0] > ms[1] > ms[2]


def test_recompute_reproduces_every_number_and_compare_finds_tampering():
    stats = synthetic()
    doc = make_stats(np.linspace(0.1, 0.9, 30), vocab=8192, draw=np.repeat(np.arange(10), 3), sampler="document")
    cert = roundtrip(certify(stats, message_bits=5e4, extra_bits={"arch": 1.0}, document_stats=doc,
                             num_documents=500, mean_bytes_per_token=3.0, data={"path": "d"}))
    cert["stats"] = {"sha256": "00"}  # caller-added provenance is carried over verbatim
    again = recompute(cert, stats, document_stats=doc)
    assert compare(cert, again) == []
    tampered = roundtrip(cert)
    tampered["bounds"]["azuma"]["terms"]["complexity_bits"] *= 0.9
    tampered["bound_bits_per_token"] = 0.1
    diffs = compare(tampered, recompute(tampered, stats, document_stats=doc))
    assert any("bounds.azuma.terms.complexity_bits" in d for d in diffs)
    assert any(d.startswith("bound_bits_per_token") for d in diffs)
    other = synthetic(seed=1)
    assert compare(cert, recompute(cert, other, document_stats=doc)) != []
    with pytest.raises(TokenboundError, match="schema"):
        recompute({"schema": "x"}, stats)


def test_heldout_is_a_test_set_bound_without_message_cost():
    a = certify(synthetic(), message_bits=0, heldout=True)
    b = certify(synthetic(), message_bits=1e7, heldout=True)
    assert a["kind"] == "test-set bound" and a["inputs"]["heldout"] is True
    assert a["bound_bits_per_token"] == b["bound_bits_per_token"]
    assert b["bounds"]["azuma"]["extra_bits"]["message"] == 0.0
    train = certify(synthetic(), message_bits=1e4)
    assert a["bound_bits_per_token"] < train["bound_bits_per_token"]


def test_document_level_baseline():
    # 3 documents drawn (block draws), each the mean of its tokens; D = 1000 documents in the corpus.
    doc = make_stats([1.0, 1.0, 0.5, 0.5, 0.0, 0.0], vocab=4, draw=np.array([0, 0, 1, 1, 2, 2]),
                     sampler="document", population_documents=1000)
    cert = certify(make_stats([1.0] * 4), message_bits=10, delta_split="equal", alpha_grid=[0.5],
                   methods=("azuma",), document_stats=doc, num_documents=1000, top_k=())
    d = cert["bounds"]["document_level"]
    # per-document losses (α = 0.5, V = 4): p = 1 → 0.6780719; p = 0.5 → −log2(0.25 + 0.125) = 1.4150375;
    # p = 0 → −log2 0.125 = 3; mean = 5.0931094/3 = 1.6977031
    assert d["terms"]["empirical_bits"] == pytest.approx(1.6977031, rel=1e-7)
    # Δ·sqrt((10 ln 2 + ln 40)/(2·1000)), Δ = log2 5
    assert d["terms"]["complexity_bits"] == pytest.approx(
        math.log2(5) * math.sqrt((10 * math.log(2) + math.log(40)) / 2000), rel=1e-12)
    assert d["num_units"] == 1000 and d["sample_size"] == 3 and cert["method"] == "azuma"
    assert certify(make_stats([1.0] * 4), message_bits=10, document_stats=doc)["inputs"]["num_documents"] == 1000
    with pytest.raises(TokenboundError, match="num_documents"):
        certify(make_stats([1.0] * 4), message_bits=10, document_stats=doc, num_documents=999)
    del doc.meta["population_documents"]
    with pytest.raises(TokenboundError, match="num_documents"):
        certify(make_stats([1.0] * 4), message_bits=10, document_stats=doc)
    with pytest.raises(TokenboundError, match="sampler"):  # token-level bounds need unbiased token draws
        certify(doc, message_bits=10)


def test_exhaustive_sample_has_no_subsampling_term():
    # Every position of m = 4 scored once: R̂_n = R̂ exactly, all of δ = 0.05 goes to Theorem A.
    # V = 4, α = 0.5, p = 1: ℓ = 0.6780719; complexity = log2 5·sqrt((10 ln 2 + ln 20)/8) = 2.3219281·1.0578734
    stats = make_stats([1.0] * 4, m=4)
    cert = certify(stats, message_bits=10, alpha_grid=[0.5], methods=("azuma",), top_k=(1,))
    assert cert["inputs"]["exhaustive"] is True
    assert cert["terms"]["subsample_bits"] == 0.0
    assert cert["bounds"]["azuma"]["delta_shares"] == {"main": 0.05, "subsample": 0.0}
    assert cert["terms"]["complexity_bits"] == pytest.approx(
        math.log2(5) * math.sqrt((10 * math.log(2) + math.log(20)) / 8), rel=1e-12)
    va = certify(stats, message_bits=10, alpha_grid=[0.5])["bounds"]["variance_adaptive"]
    assert va["terms"]["subsample_bits"] == 0.0 and va["delta_shares"] == {"main": 0.05, "subsample": 0.0}
    # the same four values drawn with replacement from a larger stream are NOT exhaustive
    assert certify(make_stats([1.0] * 4, m=5), message_bits=10)["inputs"]["exhaustive"] is False


def test_block_sampler_uses_window_means_as_draws():
    # windows of 1 and 3 positions: draw means are ℓ(p=1) and mean of three ℓ(p=0); n = 2, not 4.
    stats = make_stats([1.0, 0.0, 0.0, 0.0], draw=np.array([0, 1, 1, 1]), sampler="block")
    cert = certify(stats, message_bits=10, alpha_grid=[0.5], methods=("azuma",), top_k=())
    assert cert["inputs"]["sample_size"] == 2 and cert["inputs"]["num_positions"] == 4
    assert cert["terms"]["empirical_bits"] == pytest.approx((0.6780719 + 3.0) / 2, rel=1e-7)


def test_break_even_matches_closed_form_with_fixed_split():
    split = {"main": 0.5, "subsample": 0.5}
    cert = certify(synthetic(m=10**4), message_bits=1e5, delta_split=split, methods=("azuma",))
    b = cert["bounds"]["azuma"]
    expect = azuma_break_even_closed_form(b["terms"]["empirical_bits"], b["terms"]["subsample_bits"],
                                          b["loss_range_bits"]["range"], b["prior_bits"],
                                          b["delta_shares"]["main"], cert["random_guess_bits"])
    assert cert["break_even_tokens"]["azuma"] == expect
    at = certify(synthetic(m=expect), message_bits=1e5, delta_split=split, methods=("azuma",))
    assert at["bound_bits_per_token"] < at["random_guess_bits"]


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"),
    ({"alpha_grid": [0.0, 0.1]}, "alpha_grid"), ({"alpha_grid": [1.01]}, "alpha_grid"),
    ({"alpha_grid": []}, "alpha_grid"),
    ({"message_bits": -1.0}, "message_bits"), ({"message_bits": float("nan")}, "message_bits"),
    ({"methods": ("magic",)}, "methods"), ({"top_k": (0,)}, "top_k"),
    ({"mean_bytes_per_token": 0.0}, "mean_bytes_per_token"), ({"subsample_ci": "x"}, "subsample_ci"),
])
def test_bad_arguments(kwargs, match):
    args = {"message_bits": 10.0, **kwargs}
    with pytest.raises(TokenboundError, match=match):
        certify(make_stats([0.5, 0.5]), **args)


@pytest.mark.parametrize("stats, match", [
    (make_stats([0.5, 1.5]), "probability"), (make_stats([0.5, float("nan")]), "probability"),
    (make_stats([0.5, -0.1]), "probability"), (make_stats([]), "sample size 0"),
    (make_stats([0.5], m=0), "population_tokens"), (make_stats([0.5], vocab=1), "vocab_size"),
    (make_stats([0.5], sampler="bogus"), "sampler"),
])
def test_bad_stats(stats, match):
    with pytest.raises(TokenboundError, match=match) as e:
        certify(stats, message_bits=10.0)
    assert "\n" not in str(e.value)


def test_certified_bounds_cover_the_true_risk_on_a_markov_source():
    # End to end through certify: a 4-token Markov source, a fixed miscalibrated model (message 0 bits, one
    # hypothesis), n = 300 of m = 3000 positions subsampled. R(h) at each method's chosen α is computable
    # exactly: (1/m) Σ_i Σ_v T[x_{i−1}, v]·ℓ_α(v | x_{i−1}). At δ = 0.2 it may exceed a bound in <= 20% of trials.
    rng = np.random.default_rng(123)
    vocab, m, n, trials = 4, 3000, 300, 40
    trans = np.array([[0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.8, 0.1], [0.25, 0.25, 0.25, 0.25], [0.6, 0.0, 0.0, 0.4]])
    model = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.6, 0.2], [0.4, 0.2, 0.2, 0.2], [0.5, 0.1, 0.1, 0.3]])
    entropy = -(model * np.log2(model)).sum(axis=1)
    rank = 1 + (model[:, None, :] > model[:, :, None]).sum(axis=2)  # rank[prev, tok]
    failures = {"azuma": 0, "variance_adaptive": 0}
    for _ in range(trials):
        x = np.empty(m + 1, dtype=int)
        x[0] = 0
        u = rng.random(m)
        for i in range(m):
            x[i + 1] = np.searchsorted(trans[x[i]].cumsum(), u[i], side="right").clip(max=3)
        prev, tok = x[:-1], x[1:]
        pick = rng.integers(0, m, n)
        stats = make_stats(model[prev, tok][pick], m=m, vocab=vocab, rank=rank[prev, tok][pick],
                           entropy=entropy[prev][pick])
        cert = certify(stats, message_bits=0.0, delta=0.2)
        for name in failures:
            alpha = cert["bounds"][name]["alpha"]
            smoothed = -np.log2((1 - alpha) * model + alpha / vocab)  # ℓ_α(v | prev)
            risk = float(((trans * smoothed).sum(axis=1))[prev].mean())
            failures[name] += risk > cert["bounds"][name]["bound_bits_per_token"]
    assert failures["azuma"] <= 0.2 * trials and failures["variance_adaptive"] <= 0.2 * trials


def test_pilot_draws_choose_alpha_and_lambda_then_certify_on_the_rest():
    stats = synthetic(n=3000)
    full = certify(stats, message_bits=1e4)
    cert = certify(stats, message_bits=1e4, pilot_draws=300)
    assert compare(cert, recompute(roundtrip(cert), stats)) == []
    # the choice depends on the pilot draws only: changing every certifying draw leaves it alone
    other = synthetic(n=3000, seed=9)
    keep = stats.draw < 300
    mixed = TokenStats(np.concatenate([stats.positions[keep], other.positions[other.draw >= 300]]),
                       np.concatenate([stats.prob[keep], other.prob[other.draw >= 300]]),
                       np.concatenate([stats.rank[keep], other.rank[other.draw >= 300]]),
                       np.concatenate([stats.entropy_bits[keep], other.entropy_bits[other.draw >= 300]]),
                       np.concatenate([stats.draw[keep], other.draw[other.draw >= 300]]), meta=stats.meta)
    cert2 = certify(mixed, message_bits=1e4, pilot_draws=300)
    rest_draws = 2700
    for name in ("azuma", "variance_adaptive"):
        b = cert["bounds"][name]
        assert b["pilot"]["alpha"] == b["alpha"] == cert2["bounds"][name]["alpha"]
        assert b["pilot"]["lambda"] == b.get("lambda") == cert2["bounds"][name].get("lambda")
        assert b["sample_size"] == rest_draws
        # the empirical term is the certifying draws' mean loss at the chosen α
        rest = stats.draws_between(300, 3000)
        assert b["terms"]["empirical_bits"] == pytest.approx(
            smoothed_loss_bits(rest.prob, np.array([b["alpha"]]), 8192)[0].mean(), rel=1e-12)
        # the prior still pays for the whole grids and the method choice ...
        assert b["extra_bits"] == full["bounds"][name]["extra_bits"]
        # ... but the subsampling statement is about one (α, λ): δ2 is split only between the two methods
        assert b["delta_shares"]["subsample"] == pytest.approx(0.05 * 1e6 / (rest_draws + 1e6) / 2, rel=1e-12)
    assert cert["inputs"]["pilot_draws"] == 300
    for bad in (-1, 2999, 1.5):
        with pytest.raises(TokenboundError, match="pilot_draws"):
            certify(stats, message_bits=1e4, pilot_draws=bad)


def with_control(stats, g, lo, hi, mean):
    return TokenStats(stats.positions, stats.prob, stats.rank, stats.entropy_bits, stats.draw,
                      meta={**stats.meta, "control_variate": {"spec": "markov:1", "population_mean_bits": mean,
                                                              "draw_min_bits": lo, "draw_max_bits": hi}},
                      control_bits=g)


def test_azuma_ci_follows_subsample_ci_by_default_and_is_recorded():
    stats = synthetic()
    for ci in ("hoeffding", "maurer_pontil", "best", "betting"):
        cert = certify(stats, message_bits=1e4, subsample_ci=ci, top_k=())
        assert cert["inputs"]["azuma_ci"] == ci and cert["bounds"]["azuma"]["subsample_ci"] == ci
    paper = certify(stats, message_bits=1e4, subsample_ci="betting", azuma_ci="hoeffding", top_k=())
    assert paper["inputs"]["azuma_ci"] == "hoeffding" and paper["inputs"]["subsample_ci"] == "betting"
    with pytest.raises(TokenboundError, match="azuma_ci"):
        certify(stats, message_bits=1e4, azuma_ci="bernstein")


def test_azuma_betting_subsampling_term_is_the_betting_bound_at_its_own_share():
    # Theorem A's subsampling term with azuma_ci="betting": the betting upper bound on the draws' mean loss at
    # the chosen α, over [L_min, L_max], at the Azuma method's share δ2/(|α grid|·#methods); the Occam term is
    # unchanged, and on low-variance losses it is far below Hoeffding's Δ·sqrt(ln(1/δ2')/(2n)).
    from tokenbound.bounds.smoothing import loss_range_bits
    from tokenbound.bounds.subsampling import hoeffding_width, upper_mean

    rng = np.random.default_rng(5)
    stats = make_stats(rng.uniform(0.3, 0.5, 2000), m=10**6, vocab=8192)
    grid = [0.01, 0.1]
    hoef = certify(stats, message_bits=1e4, alpha_grid=grid, azuma_ci="hoeffding", top_k=())
    bet = certify(stats, message_bits=1e4, alpha_grid=grid, azuma_ci="betting", top_k=())
    h, b = hoef["bounds"]["azuma"], bet["bounds"]["azuma"]
    share = b["delta_shares"]["subsample"]
    assert share == h["delta_shares"]["subsample"] == pytest.approx(0.05 * 1e6 / (2000 + 1e6) / (2 * 2), rel=1e-12)
    i = grid.index(b["alpha"])
    l_min, l_max, rng_ = loss_range_bits(np.array(grid), 8192)
    losses = smoothed_loss_bits(stats.prob, np.array([b["alpha"]]), 8192)
    mean, up = upper_mean(losses, l_min[i], l_max[i], share, "betting")
    assert b["terms"]["subsample_bits"] == pytest.approx(float(up[0] - mean[0]), rel=1e-12)
    j = grid.index(h["alpha"])
    assert h["terms"]["subsample_bits"] == pytest.approx(float(hoeffding_width(rng_[j], 2000, share)), rel=1e-12)
    assert b["terms"]["subsample_bits"] < 0.25 * h["terms"]["subsample_bits"]
    assert b["bound_bits_per_token"] < h["bound_bits_per_token"]


def test_azuma_betting_uses_the_control_variate_when_theorem_b_does_not():
    stats = synthetic()
    g = -np.log2(np.clip(stats.prob + 0.05, 0.0, 1.0))  # a control that tracks the model's loss
    cv = with_control(stats, g, float(g.min()), float(g.max()), float(g.mean()))
    on = certify(cv, message_bits=1e4, subsample_ci="hoeffding", azuma_ci="betting", top_k=())
    off = certify(cv, message_bits=1e4, subsample_ci="hoeffding", azuma_ci="betting", control_variate=False,
                  top_k=())
    assert on["bounds"]["azuma"]["control_variate"] is True and off["bounds"]["azuma"]["control_variate"] is False
    assert on["inputs"]["control_variate_used"]["spec"] == "markov:1" and off["inputs"]["control_variate_used"] is None
    assert on["bounds"]["azuma"]["terms"]["subsample_bits"] != off["bounds"]["azuma"]["terms"]["subsample_bits"]
    assert compare(on, recompute(roundtrip(on), cv)) == []
    # a draw of the control outside its declared range is an error, not a silent clip
    with pytest.raises(TokenboundError, match="control variate: value .* below its lower limit"):
        certify(with_control(stats, g, float(g.min()) + 0.1, float(g.max()), float(g.mean())), message_bits=1e4,
                azuma_ci="betting")


def test_azuma_betting_with_a_pilot_recomputes():
    stats = synthetic(n=3000)
    cert = certify(stats, message_bits=1e4, azuma_ci="betting", pilot_draws=300, top_k=())
    b = cert["bounds"]["azuma"]
    assert b["sample_size"] == 2700 and b["pilot"]["alpha"] == b["alpha"] and b["subsample_ci"] == "betting"
    assert compare(cert, recompute(roundtrip(cert), stats)) == []


def test_certificate_without_azuma_ci_recomputes_as_hoeffding():
    # written before Theorem A's confidence bound was an input: no inputs.azuma_ci, no subsample_ci in the
    # Azuma entry, a Hoeffding subsampling term. It still verifies, and its Azuma numbers are Hoeffding's.
    stats = synthetic()
    old = roundtrip(certify(stats, message_bits=1e4, subsample_ci="betting", azuma_ci="hoeffding"))
    del old["inputs"]["azuma_ci"]
    del old["bounds"]["azuma"]["subsample_ci"], old["bounds"]["azuma"]["control_variate"]
    again = recompute(old, stats)
    assert compare(old, again) == [] and "azuma_ci" not in again.to_json()["inputs"]
    legacy = Certificate.from_json(old).inputs
    assert legacy.azuma_ci == "hoeffding" and legacy.azuma_ci_recorded is False
    assert certify_typed(stats, legacy).to_json() == old  # the typed inputs alone reproduce it
    new = certify(stats, message_bits=1e4, subsample_ci="betting")
    assert new["bounds"]["azuma"]["bound_bits_per_token"] < old["bounds"]["azuma"]["bound_bits_per_token"]


def test_typed_certificate_round_trips_its_json_and_its_inputs_recompute_it_byte_for_byte():
    # Certificate.from_json(j).to_json() is j, key order included, and certify on the recorded inputs writes
    # the same bytes: what `verify` and the report rely on.
    stats = synthetic(n=3000)
    g = -np.log2(np.clip(stats.prob + 0.05, 0.0, 1.0))
    cv = with_control(stats, g, float(g.min()), float(g.max()), float(g.mean()))
    doc = make_stats(np.linspace(0.1, 0.9, 30), vocab=8192, draw=np.repeat(np.arange(10), 3), sampler="document")
    for st, inputs, d in [
        (cv, CertifyInputs(message_bits=5e4, subsample_ci="betting", pilot_draws=300, mean_bytes_per_token=3.0), None),
        (stats, CertifyInputs(message_bits=5e4, extra_bits={"arch": 1.0}, num_documents=500, heldout=True,
                              delta_split={"main": 0.5, "subsample": 0.5}), doc),
    ]:
        cert = certify_typed(st, inputs, document_stats=d, model={"path": "m"}, provenance={"seed": 0})
        text = json.dumps(cert.to_json(), indent=2)
        back = Certificate.from_json(json.loads(text))
        assert back == Certificate.from_json(cert.to_json())
        assert json.dumps(back.to_json(), indent=2) == text
        again = certify_typed(st, back.inputs, document_stats=d, model=back.model, provenance=back.provenance)
        assert json.dumps(again.to_json(), indent=2) == text
        assert recompute(back, st, d) == again
    # caller-added keys are carried verbatim, after the computed ones
    j = dict(cert.to_json(), stats={"path": "x", "sha256": "00"}, label="mine")
    assert list(Certificate.from_json(j).to_json()) == list(j)
    assert recompute(j, stats, doc).extra == {"stats": {"path": "x", "sha256": "00"}, "label": "mine"}


def test_method_functions_take_keywords_only():
    from tokenbound.bounds.methods import azuma_method, variance_adaptive_method

    losses = np.ones((1, 4))
    with pytest.raises(TypeError):
        azuma_method(losses, np.arange(4), 4, None, None, {}, 0.05, "paper", 100.0)
    with pytest.raises(TypeError):
        variance_adaptive_method(losses, np.ones(4), np.arange(4), 4, np.array([0.5]), 4, {}, 0.05, "paper", 100.0,
                                 np.array([0.5]), "hoeffding")
    entry, _ = azuma_method(losses, draw=np.arange(4), num_draws=4, alpha_grid=None, vocab_size=None, prior_items={},
                            delta=0.05, split="paper", num_units=100.0)
    assert entry.terms.empirical_bits == 1.0 and entry.subsample_ci is None


def test_certify_refuses_anything_but_typed_inputs():
    with pytest.raises(TokenboundError, match="inputs"):
        certify_typed(make_stats([0.5, 0.5]), {"message_bits": 10.0})
    with pytest.raises(TokenboundError, match="missing input 'message_prefix_free'") as e:
        recompute({"schema": "tokenbound.certificate/1", "inputs": {"message_bits": 1.0}}, make_stats([0.5, 0.5]))
    assert e.value.param is None
