import subprocess
import sys

import numpy as np
import pytest

from tokenbound import __version__
from tokenbound.artifacts import atomic_output_dir, read_manifest, write_json, make_manifest, sha256_dir
from tokenbound.bounds.stats import TokenStats
from tokenbound.errors import TokenboundError


def test_version_cli():
    out = subprocess.run([sys.executable, "-m", "tokenbound", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "art"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "x").write_text("partial")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_atomic_output_dir_refuses_existing_without_force(tmp_path):
    out = tmp_path / "art"
    with atomic_output_dir(out) as tmp:
        write_json(tmp / "manifest.json", make_manifest("k", a=1))
    assert read_manifest(out, "k")["a"] == 1
    with pytest.raises(TokenboundError, match="already exists"):
        with atomic_output_dir(out):
            pass
    h = sha256_dir(out)
    with atomic_output_dir(out, force=True) as tmp:
        write_json(tmp / "manifest.json", make_manifest("k", a=2))
        (tmp / "f").write_text("new")
    assert read_manifest(out)["a"] == 2 and sha256_dir(out) != h


def test_tokenstats_roundtrip_and_validation(tmp_path):
    n = 5
    s = TokenStats(positions=np.arange(n), prob=np.full(n, 0.5), rank=np.ones(n), entropy_bits=np.ones(n),
                   draw=np.arange(n), meta=dict(sampler="token", context_rule="doc:8", seed=0,
                                                population_tokens=100, vocab_size=4))
    s.validate()
    s.save(tmp_path / "s.npz")
    t = TokenStats.load(tmp_path / "s.npz")
    assert np.array_equal(t.prob, s.prob) and t.meta == s.meta and t.num_draws == n
    s.prob[2] = np.nan
    with pytest.raises(TokenboundError, match="position 2"):
        s.validate()


def test_artifacts_get_the_modes_of_ordinary_files(tmp_path):
    import os

    from tokenbound.artifacts import write_bytes

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_bytes(tmp_path / "b.bin", b"123")
        with atomic_output_dir(tmp_path / "art") as tmp:
            write_json(tmp / "manifest.json", make_manifest("k"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "b.bin").read_bytes() == b"123" and read_manifest(tmp_path / "art")["kind"] == "k"
