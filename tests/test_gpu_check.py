"""benchmarks/gpu_check.py runs at a tiny size on CPU: every check prints PASS and the summary says so."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_tiny_cpu_run_passes_every_check():
    res = _run("--device", "cpu", "--tiny")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert checks and all(line.startswith("PASS") for line in checks), checks
    names = " | ".join(checks)
    for kind in ("dense", "lowrank:8", "lora:8", "kron", "monarch:4"):
        assert f"layer {kind} " in names
    assert "subspace" in names and "bf16 autocast" in names and "ddp one-process gloo" in names
    assert any("throughput demo GPT" in line and "tokens/s" in line for line in lines)
    assert lines[-1].startswith(f"== summary: {len(checks)} of {len(checks)} checks PASS")


def test_cuda_without_cuda_is_a_one_line_error():
    import torch

    if torch.cuda.is_available():
        return
    res = _run("--device", "cuda", "--tiny")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "--device cuda" in res.stderr
