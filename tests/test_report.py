"""`tokenbound report`: every certificate re-checked before it is shown, consistent number formats, readable plots."""
import json
import shutil

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.models.markov_fit import fit_store
from tokenbound.report import checked_rows
from tokenbound.report.plots import CLIP_FACTOR, bound_vs_message_figure
from tokenbound.report.flat import fmt_count as _fmt_count, fmt_error_rate as _fmt_error_rate, markdown_table


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    docs = [np.array([1 + (int(rng.integers(1, 16)) + 3 * k) % 15 for k in range(int(rng.integers(5, 50)))] + [0])
            for _ in range(120)]
    write_store(d / "store", np.concatenate(docs), np.cumsum([0] + [len(x) for x in docs[:-1]]), 16, 0)
    fit_store(d / "store", 2, d / "markov")
    (d / "certs").mkdir()
    assert main(["bound", "--markov", str(d / "markov"), "--data", str(d / "store"), "--out",
                 str(d / "certs" / "good.json"), "--samples", "300"]) == 0
    return d


def _table_row(text: str, name: str) -> list[str]:
    head = next(line for line in text.splitlines() if line.startswith("| model |"))
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return dict(zip([c.strip() for c in head.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))


def test_hand_edited_headline_is_flagged_and_the_recomputed_number_shown(cert_dir, tmp_path):
    certs = tmp_path / "certs"
    shutil.copytree(cert_dir / "certs", certs)
    good = json.loads((certs / "good.json").read_text())
    real = good["bound_bits_per_token"]
    forged = dict(good, bound_bits_per_token=real - 1.5, vacuous=False, label="forged")
    (certs / "forged.json").write_text(json.dumps(forged))
    assert main(["report", str(certs), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    bad, ok = _table_row(text, "forged"), _table_row(text, "good")
    assert ok["checks"] == "ok"
    assert bad["checks"].startswith("FAILED: bound_bits_per_token") and "recomputed" in bad["checks"]
    assert bad["headline"] == f"{real:.3f}" == ok["headline"]        # the recomputed number, not the edited one
    assert f"{real - 1.5:.3f}" not in bad["headline"]
    assert "1 of 2 certificates FAILED" in text


def test_strict_refuses_and_writes_nothing(cert_dir, tmp_path, capsys):
    certs = tmp_path / "certs"
    shutil.copytree(cert_dir / "certs", certs)
    cert = json.loads((certs / "good.json").read_text())
    cert["terms"]["complexity_bits"] *= 0.5
    (certs / "good.json").write_text(json.dumps(cert))
    rc = main(["report", str(certs), "--out", str(tmp_path / "out" / "r.md"), "--strict"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "good.json" in err and "re-check" in err
    assert not (tmp_path / "out").exists()


def test_missing_or_altered_stats_are_flagged(cert_dir, tmp_path):
    certs = tmp_path / "certs"
    shutil.copytree(cert_dir / "certs", certs)
    cert = json.loads((certs / "good.json").read_text())
    stats = certs / cert["stats"]["path"]
    stats.write_bytes(stats.read_bytes() + b"\0")
    from tokenbound.report.tables import find_certificates

    (row,) = checked_rows(find_certificates([certs / "good.json"]))
    assert row["check"].startswith("FAILED") and "altered" in row["check"]
    stats.unlink()
    (row,) = checked_rows(find_certificates([certs / "good.json"]))
    assert row["check"].startswith("FAILED") and "missing" in row["check"]


def test_message_bits_have_one_format():
    assert _fmt_count(9373.0) == "9,373"            # a compressed model's float length
    assert _fmt_count(204827) == "204,827"          # a Markov model's int length
    assert _fmt_count(66595.5) == "66,595.500"      # fractional only when it is
    assert _fmt_count(None) == "–"
    rows = [{"name": "a", "message_bits": 9373.0}, {"name": "b", "message_bits": 204827}]
    table = markdown_table(rows, [("name", "model"), ("message_bits", "message bits")])
    assert "| a | 9,373 |" in table and "| b | 204,827 |" in table


def test_top_k_error_bounds_are_clipped_at_one_and_flagged():
    assert _fmt_error_rate(5.733) == "1 (vacuous)"
    assert _fmt_error_rate(1.0) == "1 (vacuous)"
    assert _fmt_error_rate(0.957) == "0.957"
    assert _fmt_error_rate(None) == "–"
    table = markdown_table([{"top1": 0.5, "top10": 2.5}], [("top1", "top-1 err"), ("top10", "top-10 err")])
    assert "| 0.500 | 1 (vacuous) |" in table and "2.5" not in table


def _row(name, mb, bound, emp=2.0):
    return {"name": name, "kind": "train", "message_bits": mb, "bound": bound, "empirical": emp,
            "complexity": bound - emp, "subsample": 0.0, "random_guess": 13.0}


def test_bound_vs_message_plot_clips_outliers_and_numbers_points():
    import matplotlib.pyplot as plt

    rows = [_row("gpt", 66_595, 9.4, 8.6), _row("gpt b", 70_000, 9.5, 8.7), _row("markov 1", 3.6e6, 15.1),
            _row("markov 3", 3.4e7, 89.3)]
    fig = bound_vs_message_figure(rows)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        lo, hi = ax.get_ylim()
        assert hi <= CLIP_FACTOR * 13.0 + 1e-9 and hi > 15.1    # the outlier does not stretch the axis
        assert "bits" in ax.get_xlabel() and "bits per token" in ax.get_ylabel() and ax.get_title()
        texts = [t.get_text() for t in ax.texts]
        assert any("random guess" in t for t in texts)
        assert sorted(t for t in texts if t.isdigit()) == ["1", "2", "3", "4"]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("markov 3: 89.300" in t and "above the plot" in t for t in legend)
        # the numbers of the two near-coincident points do not overlap
        fig.canvas.draw()
        boxes = {t.get_text(): t.get_window_extent() for t in ax.texts if t.get_text() in ("1", "2")}
        assert not boxes["1"].overlaps(boxes["2"])
    finally:
        plt.close(fig)
