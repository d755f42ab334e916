"""Two `bound` runs on the same --out: the second is refused at once, naming the lock file and the holder's pid."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tokenbound.artifacts import exclusive_lock
from tokenbound.cli import main
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.bound import bound, lock_path_for
from tokenbound.models.markov_fit import fit_store

HOLD = """
import sys, time
from tokenbound.artifacts import exclusive_lock
with exclusive_lock(sys.argv[1], "test"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 12, size=int(rng.integers(5, 30))) for _ in range(50)]
    tokens = np.concatenate([np.append(d, 0) for d in docs])
    write_store(root / "data", tokens, np.cumsum([0] + [len(d) + 1 for d in docs[:-1]]), 12, 0)
    fit_store(root / "data", 1, root / "markov")
    return root


def _argv(made, out):
    return ["bound", "--markov", str(made / "markov"), "--data", str(made / "data"), "--out", str(out),
            "--samples", "60"]


def test_second_bound_on_the_same_out_is_refused(made, tmp_path, capsys):
    out = tmp_path / "certs" / "c.json"
    out.parent.mkdir()
    lock = lock_path_for(out)
    assert lock == tmp_path / "certs" / "c.json.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(_argv(made, out))
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert str(lock) in err and f"pid {holder.pid}" in err and "--out" in err
        assert not out.exists() and not (tmp_path / "certs" / "c.stats").exists()
    finally:
        holder.kill()   # SIGKILL: no cleanup, the lock file stays behind
        holder.wait()
    assert lock.exists()
    # a lock file left by a dead process does not block; the lock is removed when bound ends
    assert main(_argv(made, out)) == 0
    assert out.exists() and not lock.exists()


def test_lock_is_released_on_error(made, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main([*_argv(made, out)[:-1], "0"]) == 2          # --samples 0
    assert "--samples" in capsys.readouterr().err
    assert not lock_path_for(out).exists() and not out.exists()
    # a new directory made only for the lock is not left behind either
    deep = tmp_path / "new" / "dir" / "c.json"
    with pytest.raises(TokenboundError, match="^samples: ") as e:  # the library names its parameter
        bound(made / "markov", made / "data", deep, samples=0, progress=False)
    assert e.value.cli_message() == "--samples: " + e.value.message
    assert not (tmp_path / "new").exists()
    assert main(_argv(made, out)) == 0 and not lock_path_for(out).exists()


def test_exclusive_lock_in_one_process(tmp_path):
    lock = tmp_path / "x.lock"
    with exclusive_lock(lock, "x", "out"):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(TokenboundError, match=rf"^out x: another process \(pid {os.getpid()}\)") as e:
            with exclusive_lock(lock, "x", "out"):
                pass
        assert e.value.cli_message().startswith("--out x: another process")  # the CLI names the flag
        assert lock.exists()   # the refused attempt leaves the holder's lock alone
    assert not lock.exists()
    with pytest.raises(RuntimeError):
        with exclusive_lock(lock, "x", "out"):
            raise RuntimeError("boom")
    assert not lock.exists()
