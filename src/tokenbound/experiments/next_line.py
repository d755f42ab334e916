"""A downstream task built offline from held-out Python: pick the true next line of a function among candidates.

Questions (``questions``): the held-out documents of a TokenStore (its ``val/`` split, decoded with the store's
tokenizer) are parsed with `ast`; for each function (shuffled, seeded) one line j >= 1 with at least
``MIN_CHARS`` non-blank characters is chosen at random. The prompt is the function's lines before j (dedented),
the true answer line j; the distractors are lines of *other* held-out functions whose token length is nearest
to the answer's (ties broken at random), re-indented like the answer so indentation gives nothing away. The
choices are shuffled. Every random choice comes from numpy ``default_rng([seed, 12])``.

Scoring (``score``): a model picks the choice with the highest total log-probability of the choice's tokens
given eot + the prompt's tokens (prompt and choice tokenized separately, so the prompt is the same for every
choice); a row longer than the model's context keeps its last tokens. Ties go to the first choice.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import TokenboundError

MIN_CHARS = 8
RULE = ("choose the candidate with the highest sum of log p over its tokens given [eot] + prompt tokens "
        "(left-truncated to the model's context); ties -> first")


@dataclass(frozen=True)
class Question:
    identity: str              # "val document j::function name"
    prompt: str
    choices: tuple[str, ...]
    answer: int                # index of the true line in `choices`

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Question":
        return cls(d["identity"], d["prompt"], tuple(d["choices"]), int(d["answer"]))


def held_out_functions(store) -> list[tuple[str, list[str]]]:
    """(identity, dedented lines) of every function in the decoded documents of the store's ``val/`` split."""
    val = store.val
    if val is None:
        raise TokenboundError("the downstream task needs a held-out val/ split", param="data", value=store.path)
    out = []
    for j in range(val.num_documents):
        text = val.decode(val.document(j))
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno > node.lineno + 1:
                body = textwrap.dedent("\n".join(lines[node.lineno - 1:node.end_lineno])).splitlines()
                out.append((f"val document {j}::{node.name}", body))
    return out


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def questions(store, tokenizer, *, num: int, choices: int, max_line_tokens: int, seed: int) -> list[Question]:
    """Up to `num` questions with `choices` candidates each (see the module docstring)."""
    rng = np.random.default_rng([seed, 12])
    funcs = held_out_functions(store)
    usable = lambda line: MIN_CHARS <= len(line.strip()) and len(tokenizer.encode(line.strip())) <= max_line_tokens
    pool = [(f, line.strip(), len(tokenizer.encode(line.strip())))
            for f, (_, lines) in enumerate(funcs) for line in lines[1:] if usable(line)]
    func_of = np.array([g for g, _, _ in pool], dtype=np.int64)
    sizes = np.array([n for _, _, n in pool], dtype=np.int64)
    out: list[Question] = []
    for f in rng.permutation(len(funcs)):
        if len(out) == num:
            break
        ident, lines = funcs[f]
        targets = [j for j in range(1, len(lines)) if usable(lines[j])]
        if not targets:
            continue
        j = targets[int(rng.integers(len(targets)))]
        true = lines[j].strip()
        size = len(tokenizer.encode(true))
        # nearest token length first, ties in a random order; never the same function or the same text
        ranked = np.lexsort((rng.random(len(pool)), np.abs(sizes - size), func_of == f))
        picked: list[str] = []
        for k in ranked:
            text = pool[k][1]
            if func_of[k] != f and text != true and text not in picked:
                picked.append(text)
            if len(picked) == choices - 1:
                break
        if len(picked) < choices - 1:
            continue
        order = rng.permutation(choices)
        cands = [true, *picked]
        indent = _indent(lines[j])
        out.append(Question(ident, "\n".join(lines[:j]) + "\n", tuple(indent + cands[i] + "\n" for i in order),
                            int(np.flatnonzero(order == 0)[0])))
    if len(out) < 2:
        raise TokenboundError(f"downstream task: only {len(out)} questions from {len(funcs)} held-out functions "
                              f"(need a val/ split with Python functions)")
    return out


def choice_scores(model, tokenizer, eot: int, q: Question) -> list[float]:
    """Total ln p of each choice's tokens given [eot] + the prompt (see the module docstring)."""
    import torch

    prompt = [eot, *tokenizer.encode(q.prompt)]
    limit = model.max_context
    rows, lengths = [], []
    for c in q.choices:
        ids = tokenizer.encode(c)
        seq = prompt + ids
        if limit is not None:
            seq = seq[-(limit + 1):]
        rows.append(seq)
        lengths.append(len(ids))
    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), eot, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, :len(r)] = torch.tensor(r)
    lp = model.log_probs(x[:, :-1]).double().cpu()
    out = []
    for i, (r, n) in enumerate(zip(rows, lengths)):
        pos = torch.arange(len(r) - 1 - n, len(r) - 1)
        out.append(float(lp[i, pos, x[i, pos + 1]].sum()))
    return out


def score(model, tokenizer, eot: int, qs: list[Question]) -> list[int]:
    """1 where the model picks the true line, else 0, per question."""
    return [int(int(np.argmax(choice_scores(model, tokenizer, eot, q))) == q.answer) for q in qs]
