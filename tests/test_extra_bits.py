"""--extra-bits NAME=BITS: paying from the CLI for choices made after looking at the data (docs/theory.md §12)."""
import json
import math

import numpy as np
import pytest

from tokenbound.bounds.budget import RESERVED_PRIOR_ITEMS, parse_extra_bits
from tokenbound.bounds.martingale import azuma_complexity_bits
from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.bound import MessageLength, bound
from tokenbound.evaluate.verify import verify
from tokenbound.models.markov_fit import fit_store


def test_parse_worked_example():
    assert parse_extra_bits(["arch=2", "quant=1.584962500721156", " seed = 0 "]) == {
        "arch": 2.0, "quant": math.log2(3), "seed": 0.0}
    assert parse_extra_bits([]) == {}


@pytest.mark.parametrize("spec, match", [
    (["arch"], "NAME=BITS"), (["=3"], "NAME=BITS"), (["arch=abc"], "number of bits"),
    (["arch=nan"], "finite"), (["arch=inf"], "finite"), (["arch=-1"], ">= 0"),
    (["arch=1", "arch=2"], "twice"),
] + [([f"{name}=1"], "reserved") for name in RESERVED_PRIOR_ITEMS])
def test_parse_rejects_bad_specs_naming_the_flag(spec, match):
    with pytest.raises(TokenboundError, match=match) as e:
        parse_extra_bits(spec)
    assert str(e.value).startswith("extra_bits: ") and "\n" not in str(e.value)
    assert e.value.cli_message().startswith("--extra-bits: ")


def _store(path, seed, num_docs=120, vocab=16):
    rng = np.random.default_rng(seed)
    docs = [np.array([1 + (int(rng.integers(1, vocab)) + 3 * k + int(rng.integers(0, 2))) % (vocab - 1)
                      for k in range(int(rng.integers(5, 60)))] + [0]) for _ in range(num_docs)]
    return write_store(path, np.concatenate(docs), np.cumsum([0] + [len(d) for d in docs[:-1]]), vocab, 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("xb")
    _store(d / "store", seed=0)
    fit_store(d / "store", 1, d / "markov")
    return d


def test_cli_extra_bits_are_itemised_paid_and_verified(setup):
    plain, paid = setup / "plain.json", setup / "paid.json"
    common = ["bound", "--markov", str(setup / "markov"), "--data", str(setup / "store"), "--samples", "300"]
    assert main(common + ["--out", str(plain)]) == 0
    assert main(common + ["--out", str(paid), "--extra-bits", "context_rule=2", "--extra-bits", "order=1.5"]) == 0
    a, b = (json.loads(p.read_text()) for p in (plain, paid))
    assert b["inputs"]["extra_bits"] == {"context_rule": 2.0, "order": 1.5}
    for name in ("azuma", "variance_adaptive"):
        items = b["bounds"][name]["extra_bits"]
        assert items["context_rule"] == 2.0 and items["order"] == 1.5
        assert b["bounds"][name]["prior_bits"] == pytest.approx(a["bounds"][name]["prior_bits"] + 3.5, rel=1e-12)
    # Theorem A's complexity term Δ·sqrt((L ln 2 + ln(1/δ1))/(2m)) with L = the plain prior + 3.5 bits
    ea, eb = a["bounds"]["azuma"], b["bounds"]["azuma"]
    expected = azuma_complexity_bits(eb["loss_range_bits"]["range"], ea["prior_bits"] + 3.5,
                                     eb["delta_shares"]["main"], eb["num_units"])
    assert eb["terms"]["complexity_bits"] == pytest.approx(float(expected), rel=1e-12)
    assert eb["terms"]["complexity_bits"] > ea["terms"]["complexity_bits"]
    assert b["bound_bits_per_token"] > a["bound_bits_per_token"]
    assert verify(paid) == []


@pytest.mark.parametrize("argv, match", [
    (["--extra-bits", "method_choice=1"], "--extra-bits: 'method_choice' is reserved"),
    (["--extra-bits", "arch=-2"], "--extra-bits: 'arch' must be a finite number of bits >= 0"),
    (["--extra-bits", "arch"], "--extra-bits: expected NAME=BITS"),
])
def test_cli_bad_extra_bits_is_a_one_line_error(setup, tmp_path, capsys, argv, match):
    rc = main(["bound", "--markov", str(setup / "markov"), "--data", str(setup / "store"), "--samples", "50",
               "--out", str(tmp_path / "c.json")] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and match in err and not (tmp_path / "c.json").exists()


def test_a_name_the_message_already_charges_is_refused(setup, tmp_path):
    msg = MessageLength(100.0, "test message", True, {"quantization_levels": 2.0})
    with pytest.raises(TokenboundError, match="extra_bits: quantization_levels already charged"):
        bound(setup / "markov", setup / "store", tmp_path / "c.json", samples=50, message=msg,
              extra_bits={"quantization_levels": 0.0}, progress=False)


def test_experiment_passes_extra_bits_to_every_certificate(tmp_path, monkeypatch):
    import tokenbound.evaluate.bound as evaluate_bound
    from tokenbound.experiments.common import Study, certify

    seen = []

    def fake_bound(model, data, out, **kwargs):
        seen.append(kwargs.get("extra_bits"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"inputs": {"extra_bits": kwargs.get("extra_bits")}}))

    monkeypatch.setattr(evaluate_bound, "bound", fake_bound)
    study = Study(name="t", out=tmp_path / "s", scale="tiny", progress=False, extra_bits={"arch": 2.0})
    certify(study, "a", tmp_path, tmp_path)
    certify(study, "b", tmp_path, tmp_path, extra_bits={"levels": 1.0})
    assert seen == [{"arch": 2.0}, {"levels": 1.0, "arch": 2.0}]
    with pytest.raises(TokenboundError, match="^extra_bits: ") as e:  # the parameter; the CLI names the flag
        certify(study, "c", tmp_path, tmp_path, extra_bits={"arch": 1.0})
    assert e.value.cli_message().startswith("--extra-bits: ")
    # resuming with different extra bits would silently keep certificates that do not pay them
    with pytest.raises(TokenboundError, match="^extra_bits: .*a.json exists without these extra bits"):
        certify(Study(name="t", out=tmp_path / "s", scale="tiny", progress=False, extra_bits={"arch": 3.0}),
                "a", tmp_path, tmp_path)
    with pytest.raises(TokenboundError, match="extra_bits: 'alpha_grid' is reserved") as e:
        Study(name="t", out=tmp_path / "s", scale="tiny", extra_bits={"alpha_grid": 1.0})
    assert e.value.cli_message().startswith("--extra-bits: ")


def test_experiment_cli_parses_extra_bits(tmp_path, monkeypatch, capsys):
    import tokenbound.experiments as experiments

    got = {}

    def fake_run(name, out, **kwargs):
        got.update(kwargs)
        (tmp_path / "table.md").write_text("table")
        return {"verified": True}

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    assert main(["experiment", "scaling", "--scale", "tiny", "--out", str(tmp_path), "--extra-bits", "arch=3"]) == 0
    assert got["extra_bits"] == {"arch": 3.0}
    assert main(["experiment", "scaling", "--out", str(tmp_path), "--extra-bits", "lambda_grid=3"]) == 2
    assert "--extra-bits: 'lambda_grid' is reserved" in capsys.readouterr().err


def test_cli_azuma_ci_default_is_betting_and_hoeffding_is_the_papers(setup):
    # (the other `bound` option of this change) default: the Azuma method's subsampling term uses the same
    # betting bound + control variate as Theorem B; --azuma-ci hoeffding reproduces the seed paper's term
    common = ["bound", "--markov", str(setup / "markov"), "--data", str(setup / "store"), "--samples", "300"]
    assert main(common + ["--out", str(setup / "bet.json")]) == 0
    assert main(common + ["--out", str(setup / "hoef.json"), "--azuma-ci", "hoeffding"]) == 0
    bet, hoef = (json.loads((setup / f).read_text()) for f in ("bet.json", "hoef.json"))
    assert bet["inputs"]["azuma_ci"] == "betting" and bet["bounds"]["azuma"]["control_variate"] is True
    assert hoef["inputs"]["azuma_ci"] == "hoeffding" and hoef["bounds"]["azuma"]["subsample_ci"] == "hoeffding"
    h = hoef["bounds"]["azuma"]
    assert h["terms"]["subsample_bits"] == pytest.approx(
        h["loss_range_bits"]["range"] * math.sqrt(math.log(1 / h["delta_shares"]["subsample"]) / (2 * 270)),
        rel=1e-12)  # Δ·sqrt(ln(1/δ2)/(2n)) on the 270 certifying draws (30 are the pilot)
    assert bet["bounds"]["azuma"]["terms"]["subsample_bits"] < h["terms"]["subsample_bits"]
    assert verify(setup / "bet.json") == [] and verify(setup / "hoef.json") == []
