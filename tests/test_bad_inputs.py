"""Bad input across the verbs: a one-line error naming the flag or file, exit status 2, no traceback, nothing
half-written (README "Commands")."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tokenbound.cli import build_parser, main

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"f{i}.py").write_text(TEXT * (20 + i))
    assert main(["prepare", "--corpus", str(corpus), "--tokenizer", "byte", "--out", str(root / "store"),
                 "--val-fraction", "0.3"]) == 0
    assert main(["markov", "--data", str(root / "store"), "--order", "1", "--out", str(root / "m1")]) == 0
    assert main(["bound", "--markov", str(root / "m1"), "--data", str(root / "store"), "--out",
                 str(root / "certs" / "m1.json"), "--samples", "40"]) == 0
    assert main(["train", "--data", str(root / "store"), "--preset", "tiny", "--steps", "2", "--out",
                 str(root / "run"), "--no-progress"]) == 0
    (root / "afile").write_text("not a directory")
    return root


def test_out_under_a_regular_file_is_one_line_for_every_writer(work, capsys):
    f = work / "afile"
    store, corpus = work / "store", work / "corpus"
    cases = [
        ["prepare", "--corpus", corpus, "--tokenizer", "byte", "--out", f / "s"],
        ["markov", "--data", store, "--order", "1", "--out", f / "m"],
        ["train", "--data", store, "--preset", "tiny", "--steps", "2", "--out", f / "run"],
        ["bound", "--markov", work / "m1", "--data", store, "--out", f / "c.json", "--samples", "20"],
        ["report", work / "certs", "--out", f / "r.md"],
        ["compress", "--run", work / "run", "--method", "quant:levels=11", "--out", f / "c"],
    ]
    for argv in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, str(f), "not a directory")
    assert f.read_text() == "not a directory"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (a folder nobody can create files in)")
def test_out_in_an_unwritable_place_names_the_path(work, capsys):
    cases = [
        ["prepare", "--corpus", work / "corpus", "--tokenizer", "byte", "--out", "/proc/tokenbound-x"],
        ["markov", "--data", work / "store", "--order", "1", "--out", "/proc/tokenbound-m"],
        ["train", "--data", work / "store", "--preset", "tiny", "--steps", "2", "--out", "/proc/tokenbound-run"],
        ["bound", "--markov", work / "m1", "--data", work / "store", "--out", "/proc/tokenbound.json"],
        ["report", work / "certs", "--out", "/proc/tokenbound.md"],
    ]
    for argv in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, "--out /proc/tokenbound")


def test_report_out_is_a_directory_and_leaves_no_plots(work, capsys):
    target = work / "rep_dir"
    target.mkdir()
    code, _, err = run_cli(capsys, "report", work / "certs", "--out", target)
    assert_one_line_error(code, err, "--out", "is a directory")
    assert list(target.iterdir()) == []
    assert not list(work.glob("rep_dir*.png")) and not list(work.glob(".*.tmp.png"))


def test_report_writes_its_plots_beside_the_markdown(work, capsys):
    code, _, _ = run_cli(capsys, "report", work / "certs", "--out", work / "r" / "report.md")
    assert code == 0
    assert sorted(p.name for p in (work / "r").iterdir()) == ["report.md", "report_bound_vs_message.png",
                                                             "report_terms.png"]


def test_bound_out_is_a_directory(work, capsys):
    code, _, err = run_cli(capsys, "bound", "--markov", work / "m1", "--data", work / "store", "--out",
                           work / "certs", "--samples", "20")
    assert_one_line_error(code, err, "--out", "is a directory")


def test_info_on_a_regular_file_and_corrupt_doc_offsets(work, capsys, tmp_path):
    code, _, err = run_cli(capsys, "info", work / "afile")
    assert_one_line_error(code, err, str(work / "afile"), "is a file")
    import shutil

    for content in (b"garbage\n", (work / "store" / "doc_offsets.npy").read_bytes()[:100]):
        bad = tmp_path / f"bad{len(content)}"
        shutil.copytree(work / "store", bad)
        (bad / "doc_offsets.npy").write_bytes(content)
        code, _, err = run_cli(capsys, "info", bad)
        assert_one_line_error(code, err, str(bad / "doc_offsets.npy"), "not a readable .npy")
    bad = tmp_path / "float_offsets"
    shutil.copytree(work / "store", bad)
    np.save(bad / "doc_offsets.npy", np.zeros((2, 2)))
    code, _, err = run_cli(capsys, "info", bad)
    assert_one_line_error(code, err, "doc_offsets.npy", "1-D integer array")


@pytest.mark.parametrize("model,train,needle", [
    ({"n_layer": "2"}, {}, "n_layer must be int, got '2'"),
    ({}, {"lr": "fast"}, "lr must be float, got 'fast'"),
    ({}, {"steps": 2.5}, "steps must be int, got 2.5"),
    ({"bias": 1}, {}, "bias must be bool, got 1"),
    ({"n_head": 0}, {}, "n_head must be >= 1"),
])
def test_train_config_with_a_wrong_type_names_the_file_and_field(work, capsys, tmp_path, model, train, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 8, **model},
                               "train": {"steps": 2, **train}}))
    code, _, err = run_cli(capsys, "train", "--data", work / "store", "--config", cfg, "--out", tmp_path / "run")
    assert_one_line_error(code, err, f"--config {cfg}", needle)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_bpe_vocabulary_is_capped_at_parse_time(work, capsys, tmp_path):
    code, _, err = run_cli(capsys, "prepare", "--corpus", work / "corpus", "--tokenizer", "bpe:100000000",
                           "--out", tmp_path / "s")
    assert_one_line_error(code, err, "--tokenizer bpe:100000000", "<= 2^20")
    assert not (tmp_path / "s").exists()


def test_train_refuses_a_model_that_cannot_fit_in_memory(capsys, tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(400) % 50)
    assert main(["prepare", "--corpus", f"tokens:{tmp_path / 'ids.npy'}", "--vocab-size", "100000000",
                 "--eot", "0", "--out", str(tmp_path / "big")]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "big", "--preset", "tiny", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "vocabulary 100,000,000", "GiB")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


@pytest.mark.parametrize("argv,flag", [
    (["train", "--data", "D", "--preset", "tiny", "--out", "R", "--max-minutes", "nan"], "--max-minutes"),
    (["train", "--data", "D", "--preset", "tiny", "--out", "R", "--max-minutes", "0"], "--max-minutes"),
    (["demo", "--minutes", "inf"], "--minutes"),
    (["bound", "--markov", "M", "--data", "D", "--out", "c.json", "--delta", "nan"], "--delta"),
    (["validate", "--delta", "-inf"], "--delta"),
    (["prepare", "--out", "S", "--val-fraction", "nan"], "--val-fraction"),
    (["prepare", "--out", "S", "--tokenizer", "bpe:300", "--tokenizer-fraction", "nan"], "--tokenizer-fraction"),
    (["verify", "c.json", "--rescore-tol", "nan"], "--rescore-tol"),
])
def test_non_finite_float_flags_are_refused_by_the_parser(capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(argv)
    _, err = capsys.readouterr()
    assert_one_line_error(e.value.code, err, f"argument {flag}")


def test_compress_unknown_method_lists_the_valid_ones(work, capsys, tmp_path):
    code, _, err = run_cli(capsys, "compress", "--run", work / "run", "--method", "zip:9", "--out", tmp_path / "c")
    assert_one_line_error(code, err, "unknown method 'zip'", "quant:levels=11", "qat:", "ptq:", "archive")


@pytest.mark.parametrize("flag,value", [("--trials", "0"), ("--tokens", "1"), ("--workers", "0"),
                                        ("--order", "-1")])
def test_validate_names_the_bad_flag(capsys, flag, value):
    code, _, err = run_cli(capsys, "validate", flag, value)
    assert_one_line_error(code, err, f"{flag}: must be >=")


@pytest.mark.parametrize("context", [None, "doc:32", "stream:16"])
def test_block_sampler_needs_a_strided_rule(work, capsys, context):
    argv = ["bound", "--markov", work / "m1", "--data", work / "store", "--out", work / "blk.json",
            "--sampler", "block", "--samples", "20"] + (["--context", context] if context else [])
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "--sampler block", "strided")
    assert not (work / "blk.json").exists()


def test_hf_directory_with_only_a_pickle_checkpoint_is_refused(capsys, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50,
                                                                 n_positions=32, bos_token_id=0,
                                                                 eos_token_id=0))
    d = tmp_path / "hf"
    model.save_pretrained(d, safe_serialization=True)
    for f in d.glob("*.safetensors"):  # a directory as older tools leave it: weights only in pytorch_model.bin
        f.unlink()
    (d / "pytorch_model.bin").write_bytes(b"a pickle checkpoint; never opened")
    capsys.readouterr()
    from tokenbound.errors import TokenboundError
    from tokenbound.models.hf import load_hf_module

    with pytest.raises(TokenboundError, match="pickle checkpoint .*safe_serialization=True"):
        load_hf_module(d)
    code, _, err = run_cli(capsys, "compress", "--hf", d, "--method", "archive", "--out", tmp_path / "c")
    assert_one_line_error(code, err, f"{d}: weights only as a pickle checkpoint (pytorch_model.bin)",
                          "safe_serialization=True")
    assert not (tmp_path / "c").exists()
    code, _, err = run_cli(capsys, "bound", "--hf", d, "--data", tmp_path / "nostore", "--out", tmp_path / "c.json")
    assert_one_line_error(code, err, f"{d}: weights only as a pickle checkpoint")


def test_train_force_replaces_a_finished_run_and_refuses_resume(work, capsys, tmp_path):
    out = tmp_path / "run"
    base = ["train", "--data", work / "store", "--preset", "tiny", "--steps", "2", "--out", out, "--no-progress"]
    assert run_cli(capsys, *base)[0] == 0
    code, _, err = run_cli(capsys, *base)
    assert_one_line_error(code, err, f"--out {out}", "--force")
    (out / "marker").write_text("old run")
    code, out_text, _ = run_cli(capsys, *base, "--steps", "3", "--force")
    assert code == 0 and json.loads(out_text)["steps"] == 3
    assert not (out / "marker").exists() and not (tmp_path / "run.partial").exists()
    code, _, err = run_cli(capsys, *base, "--force", "--resume")
    assert_one_line_error(code, err, "--force", "--resume")


def test_an_os_error_becomes_one_line_naming_the_path(work, capsys):
    code, _, err = run_cli(capsys, "verify", work / "certs")  # a directory where a certificate file belongs
    assert_one_line_error(code, err, str(work / "certs"))


def test_every_verb_has_an_example_and_options_have_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for verb, p in sub.choices.items():
        assert "example:\n  tokenbound " in p.format_help(), verb
        for action in p._actions:
            assert action.help, f"{verb} {action.option_strings or action.dest} has no help"
    validate_help = sub.choices["validate"].format_help()
    assert "(default: 100)" in validate_help and "(default: 0)" in validate_help  # --trials, --seed


def test_plural_counts():
    from tokenbound.fmt import plural

    assert plural(1, "document") == "1 document" and plural(0, "document") == "0 documents"
    assert plural(1200, "token") == "1,200 tokens"


def test_prepare_summary_pluralises(capsys, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("only one document here")
    code, out, _ = run_cli(capsys, "prepare", "--corpus", corpus, "--tokenizer", "byte", "--out", tmp_path / "s")
    assert code == 0 and "1 document," in out and "1 documents" not in out


def test_more_bad_inputs_are_one_line(work, capsys, tmp_path):
    cases = [
        (["prepare", "--corpus", work / "corpus", "--tokenizer", "byte", "--out", tmp_path / "s", "--glob", "/abs/*"],
         ["--glob '/abs/*'", "relative"]),
        (["info", work / "store", "--top", "-1"], ["--top: must be >= 0"]),
        (["demo", "--out", work / "afile" / "demo"], ["--out", "not a directory"]),
        (["demo", "--out", work / "afile"], ["--out", "is a file"]),
        (["experiment", "scaling", "--scale", "tiny", "--out", work / "afile" / "e"], ["--out", "not a directory"]),
        (["prepare", "--corpus", f"tokens:{work / 'afile'}", "--vocab-size", "10", "--eot", "0", "--out",
          tmp_path / "s"], ["not a readable .npy array (not in .npy format)"]),
        (["compress", "--run", work / "run", "--method", "quant:levels=11", "--out", tmp_path / "c",
          "--eval-data", work / "corpus"], ["corpus"]),
    ]
    for argv, needles in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()
    for verb in (["train", "--data", "D", "--preset", "tiny", "--out", "R"], ["bound", "--markov", "M", "--data", "D",
                 "--out", "c.json"], ["verify", "c.json"], ["compress", "--run", "R", "--method", "archive",
                 "--out", "C"], ["demo"], ["experiment", "scaling", "--out", "E"]):
        with pytest.raises(SystemExit) as e:
            main(verb + ["--device", "gpu0"])
        assert_one_line_error(e.value.code, capsys.readouterr().err, "argument --device", "'gpu0'")


def test_compress_removes_its_output_when_the_held_out_evaluation_fails(work, capsys, tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(300) % 40)  # a store with another vocabulary than the run's
    assert main(["prepare", "--corpus", f"tokens:{tmp_path / 'ids.npy'}", "--vocab-size", "40", "--eot", "0",
                 "--out", str(tmp_path / "other"), "--val-fraction", "0.5"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "compress", "--run", work / "run", "--method", "quant:levels=11", "--out",
                           tmp_path / "c", "--eval-data", tmp_path / "other")
    assert_one_line_error(code, err, "--eval-data", "vocabulary")
    assert not (tmp_path / "c").exists()


def test_vacuous_summary_explains_the_break_even_size(work):
    from tokenbound.evaluate.bound import summary_lines

    cert = json.loads((work / "certs" / "m1.json").read_text())
    cert["vacuous"] = True
    cert["break_even_tokens"] = {cert["method"]: 123456.0}
    line = next(x for x in summary_lines(cert) if "break-even" in x)
    assert "123,456 tokens" in line and "would become non-vacuous" in line


def test_library_errors_name_the_parameter_and_the_cli_its_flag():
    from tokenbound.coding.compressed import parse_method
    from tokenbound.data.split import check_val_fraction
    from tokenbound.errors import TokenboundError

    with pytest.raises(TokenboundError) as e:
        check_val_fraction(1.5)
    assert str(e.value) == "val_fraction: must be in [0, 1), got 1.5"
    assert e.value.cli_message() == "--val-fraction: must be in [0, 1), got 1.5"
    assert e.value.cli_message({"val_fraction": "--holdout"}) == "--holdout: must be in [0, 1), got 1.5"
    with pytest.raises(TokenboundError) as e:  # the offending value is stated after the parameter / flag
        parse_method("ptq:bits")
    assert str(e.value) == "method 'ptq:bits': expected key=value, got 'bits'"
    assert e.value.cli_message() == "--method 'ptq:bits': expected key=value, got 'bits'"
