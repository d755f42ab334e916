"""A dialogue corpus built offline from Python source, for fine-tuning a base model into a "chat" model.

Every function or class with a docstring (found with `ast`) and a body besides it becomes one exchange:

    User: Explain this Python function.
    <its source, without the docstring, dedented>
    Assistant: <its docstring>

one exchange per document. Recipe (written to ``recipe.json`` next to the stores, with the stores' sha256): the
source files (path relative to the stdlib root and sha256 of their bytes), the format above, the longest
exchange kept (characters), the seed that shuffles the exchanges (numpy ``default_rng([seed, 11])``), the
number kept and the number held out (the first ones after the shuffle form ``val/``). Exchanges with identical
text are kept once, so no held-out exchange also occurs in training.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..artifacts import write_json
from ..errors import TokenboundError
from .code_data import SourceFile

FORMAT = "User: Explain this Python {kind}.\n{code}\nAssistant: {doc}\n"
SHUFFLE_RULE = "numpy default_rng([seed, 11]).permutation over the exchanges in (file, position) order"


@dataclass(frozen=True)
class Exchange:
    identity: str   # "path::qualified.name"
    text: str


def _units(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from _units(node, f"{name}.")


def exchanges(source: SourceFile, max_chars: int) -> list[Exchange]:
    """The exchanges of one file (none if it does not parse)."""
    try:
        tree = ast.parse(source.text)
    except (SyntaxError, ValueError):
        return []
    lines = source.text.splitlines()
    out = []
    for name, node in _units(tree):
        doc = ast.get_docstring(node)
        first = node.body[0]
        if not doc or len(node.body) < 2 or first.lineno == node.lineno:
            continue  # nothing to explain, or a one-line definition whose docstring shares the def line
        kept = lines[node.lineno - 1:first.lineno - 1] + lines[first.end_lineno:node.end_lineno]
        code = textwrap.dedent("\n".join(kept)).strip("\n")
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        text = FORMAT.format(kind=kind, code=code, doc=doc.strip())
        if len(text) <= max_chars:
            out.append(Exchange(f"{source.path}::{name}", text))
    return out


def build_dialogue_stores(out: Path, files: list[SourceFile], pretraining, *, seed: int, max_chars: int,
                          max_exchanges: int, val_exchanges: int) -> dict[str, Any]:
    """Write the dialogue TokenStore `out` (+ ``out/val``), tokenized like the TokenStore `pretraining`, and
    ``out.parent/recipe.json``; returns the recipe."""
    from ..data.store import write_store

    tok = pretraining.tokenizer
    seen: set[str] = set()
    items = []
    for f in files:
        for ex in exchanges(f, max_chars):
            if ex.text not in seen:
                seen.add(ex.text)
                items.append(ex)
    if len(items) < val_exchanges + 2:
        raise TokenboundError(f"dialogue corpus: only {len(items)} exchanges found in {len(files)} files (need more "
                              f"than {val_exchanges + 1})")
    order = np.random.default_rng([seed, 11]).permutation(len(items))[:max_exchanges]
    chosen = [items[i] for i in order]
    tokenizer_json = (Path(pretraining.path) / "tokenizer.json").read_text() \
        if (Path(pretraining.path) / "tokenizer.json").exists() else None
    extra = {"tokenizer_sha256": pretraining.manifest.get("tokenizer_sha256")}
    parts = {"train": chosen[val_exchanges:], "val": chosen[:val_exchanges]}  # train first: it replaces `out`
    stores = {}
    for part, exs in parts.items():
        docs = [np.append(np.asarray(tok.encode(e.text), dtype=np.int64), pretraining.eot) for e in exs]
        offsets = np.cumsum([0] + [len(d) for d in docs[:-1]]).astype(np.int64)
        target = out if part == "train" else out / "val"
        store = write_store(target, np.concatenate(docs), offsets, pretraining.vocab_size, pretraining.eot,
                            force=True, num_bytes=sum(len(e.text.encode()) for e in exs),
                            tokenizer_spec=pretraining.manifest.get("tokenizer"), tokenizer_json=tokenizer_json,
                            source={"kind": "dialogue", "format": FORMAT, "exchanges": len(exs)}, extra=extra)
        stores[part] = {"sha256": store.sha256, "documents": store.num_documents, "tokens": store.num_tokens}
    recipe = {"format": FORMAT, "seed": seed, "shuffle": SHUFFLE_RULE, "max_chars": max_chars,
              "exchanges_found": len(items), "exchanges_kept": len(chosen), "val_exchanges": val_exchanges,
              "tokenized_like": {"store": str(pretraining.path), "sha256": pretraining.sha256,
                                 "tokenizer": pretraining.manifest.get("tokenizer")},
              "stores": stores, "source_files": [{"path": f.path, "sha256": f.sha256} for f in files],
              "example": chosen[-1].text}
    write_json(out.parent / "recipe.json", recipe)
    return recipe
