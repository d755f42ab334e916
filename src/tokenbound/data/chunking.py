"""Cut one huge document's text into parts that encode independently to the same ids as the whole.

A byte-level BPE with the GPT-2 pre-tokenizer regex (our `bpe:N`) never merges across pre-token
boundaries, so cutting the text where the regex always puts a boundary leaves the ids unchanged:
- after a lone newline between two non-whitespace characters (the regex makes that newline a pre-token
  of its own; a longer whitespace run would be split differently at the end of a part), or, when a part
  has no such newline,
- before a space that is followed by a letter or digit (that space starts a ` ?\\p{L}+` / ` ?\\p{N}+`
  pre-token; what precedes it ends a pre-token either way).
For `byte` every character boundary is safe. Foreign tokenizers (`hf:`, `gguf:`) may look across any
boundary (e.g. a SentencePiece prefix space), so their documents are never cut (`cuttable` is False).
Invariant: "".join(parts) == the text, and encode(text) == concat(encode(part) for part in parts).
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

PART_CHARS = 1 << 20  # target size of one independently encoded part

_BEFORE_SPACED_WORD = re.compile(r"(?<=\S) (?=[^\W_])")


def cuttable(tokenizer_spec: str) -> bool:
    return tokenizer_spec == "byte" or tokenizer_spec.startswith("bpe:")


def last_safe_cut(text: str, any_boundary: bool) -> int:
    """Largest index i (0 < i < len(text)) where text may be cut, or 0 when there is none."""
    if any_boundary:
        return len(text) - 1 if len(text) > 1 else 0
    pos = text.rfind("\n", 0, len(text) - 1)
    while pos >= 0:
        if pos > 0 and not text[pos + 1].isspace() and not text[pos - 1].isspace():
            return pos + 1
        pos = text.rfind("\n", 0, pos)
    spaced = None
    for spaced in _BEFORE_SPACED_WORD.finditer(text):
        pass
    return spaced.start() if spaced is not None else 0


def safe_parts(pieces: Iterable[str], any_boundary: bool, part_chars: int | None = None) -> Iterator[str]:
    """Re-cut a stream of text pieces (cut anywhere) into parts of about `part_chars` characters, each
    ending at a safe boundary. A stretch with no safe boundary is carried along until one appears."""
    part_chars = part_chars or PART_CHARS
    carry = ""
    for piece in pieces:
        carry += piece
        while len(carry) > part_chars:
            cut = last_safe_cut(carry[:part_chars + 1], any_boundary) or last_safe_cut(carry, any_boundary)
            if cut == 0:
                break
            yield carry[:cut]
            carry = carry[cut:]
    if carry:
        yield carry
