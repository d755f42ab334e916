"""Inputs that used to hang or run for minutes are refused at once with a one-line error (exit 2).

Each case runs the CLI in a subprocess with a timeout, so a regression fails instead of hanging the suite.
Only regular files inside an artifact's own folder are opened; the model and store a certificate names must be a
model / store directory (or file) and never a device or FIFO."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.models.markov_fit import fit_store

TIMEOUT = 60


def _store(path, seed=0, vocab=16, docs=60):
    rng = np.random.default_rng(seed)
    stream, offsets = [], []
    for _ in range(docs):
        doc = [int(rng.integers(1, vocab)) for _ in range(int(rng.integers(5, 40)))]
        offsets.append(len(stream))
        stream += doc + [0]
    return write_store(path, np.array(stream), np.array(offsets), vocab, 0)


def _cli(argv, cwd):
    """(exit code, stderr) of `tokenbound ARGV` in a fresh process; fails the test if it does not end in time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "tokenbound", *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tokenbound {' '.join(argv)} still running after {TIMEOUT} s")
    return done.returncode, done.stderr.strip()


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("hangs")
    _store(root / "data")
    fit_store(root / "data", 1, root / "markov")
    assert main(["bound", "--markov", str(root / "markov"), "--data", str(root / "data"), "--out",
                 str(root / "certs" / "c.json"), "--samples", "100"]) == 0
    return root


@pytest.fixture
def work(made, tmp_path):
    shutil.copytree(made, tmp_path / "w")
    return tmp_path / "w"


def _edit(cert_path: Path, edit) -> None:
    cert = json.loads(cert_path.read_text())
    edit(cert)
    cert_path.write_text(json.dumps(cert))


@pytest.mark.parametrize("where", ["/dev/zero", "fifo", "symlink", "outside"])
def test_stats_path_must_be_a_regular_file_inside_the_certificate_folder(work, where):
    cert = work / "certs" / "c.json"
    if where == "/dev/zero":
        target = "/dev/zero"
    elif where == "fifo":
        os.mkfifo(work / "certs" / "c.stats" / "pipe.npz")
        target = "c.stats/pipe.npz"
    elif where == "symlink":
        os.symlink("/dev/zero", work / "certs" / "c.stats" / "zero.npz")
        target = "c.stats/zero.npz"
    else:  # a real statistics file, but outside the certificate's folder
        shutil.copy(work / "certs" / "c.stats" / "tokenstats.npz", work / "elsewhere.npz")
        target = "../elsewhere.npz"
    _edit(cert, lambda c: c["stats"].update(path=target))
    rc, err = _cli(["verify", str(cert), "--skip-model"], work)
    _one_line_error(rc, err, "stats.path")


@pytest.mark.parametrize("key", ["data", "model"])
def test_data_and_model_paths_are_never_devices(work, key):
    cert = work / "certs" / "c.json"
    _edit(cert, lambda c: c[key].update(path="/dev/zero"))          # a pre-relative (cwd-relative) reference
    rc, err = _cli(["verify", str(cert)], work)
    _one_line_error(rc, err, f"{key}: /dev/zero")
    _edit(cert, lambda c: c[key].update(path="../../../../../../../../../../dev/zero", relative_to="artifact"))
    rc, err = _cli(["verify", str(cert)], work)
    _one_line_error(rc, err, "dev/zero")


def test_store_whose_manifest_is_a_fifo(work):
    (work / "data" / "manifest.json").unlink()
    os.mkfifo(work / "data" / "manifest.json")
    rc, err = _cli(["verify", str(work / "certs" / "c.json")], work)
    _one_line_error(rc, err, "manifest.json")


@pytest.mark.parametrize("where", ["/dev/zero", "fifo", "outside"])
def test_markov_bitstream_is_read_only_inside_its_folder(work, where):
    man_path = work / "markov" / "manifest.json"
    man = json.loads(man_path.read_text())
    if where == "fifo":
        (work / "markov" / "model.tbm").unlink()
        os.mkfifo(work / "markov" / "model.tbm")
    else:
        shutil.copy(work / "markov" / "model.tbm", work / "copy.tbm")
        man["bitstream"] = "/dev/zero" if where == "/dev/zero" else "../copy.tbm"
        man_path.write_text(json.dumps(man))
    rc, err = _cli(["bound", "--markov", str(work / "markov"), "--data", str(work / "data"), "--out",
                    str(work / "new.json"), "--samples", "50"], work)
    _one_line_error(rc, err, "bitstream")
    assert not (work / "new.json").exists() and not (work / "new.stats").exists()


def test_absurd_markov_order_is_refused_at_once(work):
    rc, err = _cli(["markov", "--data", str(work / "data"), "--order", "100000000", "--out", str(work / "m")], work)
    _one_line_error(rc, err, "--order 100000000", "at most 15", "vocabulary 16")
    assert not (work / "m").exists()
    # the largest order the 62-bit keys allow still fits
    rc, err = _cli(["markov", "--data", str(work / "data"), "--order", "15", "--out", str(work / "m15")], work)
    assert rc == 0, err


def test_compressed_bitstreams_are_read_only_inside_the_model_folder(tmp_path):
    from tokenbound.artifacts import sha256_file
    from tokenbound.coding.compressed import read_verified, verify_files
    from tokenbound.errors import TokenboundError

    model = tmp_path / "compressed"
    model.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"payload")
    os.symlink(tmp_path / "outside.bin", model / "payload.bin")
    manifest = {"files": {"payload.bin": sha256_file(tmp_path / "outside.bin")}}
    for read in (verify_files, lambda p, m: read_verified(p, m, "payload.bin")):
        with pytest.raises(TokenboundError, match="payload.bin is outside"):
            read(model, manifest)
    (model / "payload.bin").unlink()
    os.mkfifo(model / "payload.bin")   # (read_verified on a FIFO used to block: checked by verify_files first)
    with pytest.raises(TokenboundError, match="not a regular file"):
        verify_files(model, manifest)
