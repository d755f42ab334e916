"""Tokenizers for `prepare` and for decoding a TokenStore (docs/design.md §5; specs `byte`, `bpe:N`, `hf:PATH`,
`gguf:PATH`).

Every tokenizer here is *exact* on text: ``decode(encode(text)) == text`` for any ``str`` (byte-level
tokenizers; for ``hf:``/``gguf:`` this holds when the foreign tokenizer is lossless, and `prepare`
counts the documents where it is not). The end-of-text id ``eot`` is never produced from text: a
literal ``<|endoftext|>`` inside a document is encoded as ordinary text, so a document boundary in a
stream can only come from `prepare` itself.

Invariants: ``0 <= eot < vocab_size`` and every id that ``encode`` returns is ``< vocab_size``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

from ..errors import TokenboundError

EOT_TOKEN = "<|endoftext|>"
BYTE_VOCAB_SIZE = 257  # 256 byte values + eot
BYTE_EOT = 256
MAX_VOCAB_SIZE = 2 ** 32  # ids must fit in uint32 (docs/data.md)
# The largest N of `bpe:N`. The store's vocabulary is N even when the text supports fewer merges, and every model
# trained on it carries an N x width embedding and the head's softmax over N, so N is a memory decision, not
# only a tokenizer one. 2^20 is four times the largest vocabularies in use (about 2^18) and already more ids than
# the 128 MiB BPE training text can support merges for; bpe:100000000 would make a 25 GB embedding at width 64.
MAX_BPE_VOCAB_SIZE = 2 ** 20


class TextTokenizer(Protocol):
    """What `prepare` and `TokenStore.decode` need from a tokenizer."""

    spec: str
    vocab_size: int
    eot: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]: ...

    def to_json(self) -> str | None: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, eot = 256, V = 257."""

    spec = "byte"
    vocab_size = BYTE_VOCAB_SIZE
    eot = BYTE_EOT

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes back to text; eot carries no text and is dropped. A cut through a multi-byte character
        (e.g. a window that starts mid-character) decodes to U+FFFD rather than failing."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i <= BYTE_EOT]
        if bad:
            raise TokenboundError(f"byte tokenizer: id {bad[0]} is outside [0, {BYTE_VOCAB_SIZE})")
        return bytes(i for i in ids if i != BYTE_EOT).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        """An equivalent Hugging Face tokenizer.json (ids 0..255 = bytes, 256 = eot), so that other tools
        can read a byte-level store; `load_store_tokenizer` still uses this class for `byte` stores."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        alphabet = _byte_level_alphabet()
        tok = Tokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([EOT_TOKEN])
        assert tok.token_to_id(EOT_TOKEN) == BYTE_EOT
        return tok.to_str()


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by the ByteLevel pre-tokenizer."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class HFTokenizer:
    """A Hugging Face `tokenizers.Tokenizer` with a fixed eot id and vocabulary size."""

    def __init__(self, tokenizer, spec: str, eot: int, vocab_size: int):
        # Text that spells a special token (e.g. "<|endoftext|>") is encoded as text, never as that token.
        tokenizer.encode_special_tokens = True
        self._tok = tokenizer
        self.spec = spec
        self.eot = int(eot)
        self.vocab_size = int(vocab_size)
        if not 0 <= self.eot < self.vocab_size:
            raise TokenboundError(f"{spec}: eot id {self.eot} is outside the vocabulary [0, {self.vocab_size})")
        if self.num_ids > self.vocab_size:
            raise TokenboundError(f"{spec}: tokenizer has {self.num_ids} ids, more than the vocabulary size "
                                  f"{self.vocab_size}")

    @classmethod
    def from_json(cls, text: str, spec: str, eot: int, vocab_size: int) -> "HFTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text), spec, eot, vocab_size)

    @property
    def num_ids(self) -> int:
        """Ids the tokenizer itself defines (<= vocab_size; fewer when a BPE ran out of merges)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return self.ids_of(self.encodings(texts))

    def encodings(self, texts: list[str]) -> list:
        """The Rust encoder's output for a batch: parallel over all cores, in input order (deterministic), and
        without holding the GIL, so other Python threads run meanwhile. `ids_of` turns it into arrays."""
        return self._tok.encode_batch_fast(texts, add_special_tokens=False)

    @staticmethod
    def ids_of(encodings: list) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def roundtrip_mismatches(self, texts: list[str], ids: list[np.ndarray]) -> list[bool]:
        """Per document, whether decode(ids) differs from its text. With a byte-level decoder the ids' bytes are
        compared with the text's UTF-8 bytes (vectorised, and byte-exact); otherwise the texts are decoded."""
        table = self._bytes_table()
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        if table is None or (flat.size and (flat.min() < 0 or flat.max() >= table.size)):
            decoded = self.decode_batch([a.tolist() for a in ids])
            return [d != t for d, t in zip(decoded, texts)]
        data = [t.encode("utf-8") for t in texts]
        if table.decode(flat) == b"".join(data) and all(
                int(table.lengths[a].sum()) == len(d) for a, d in zip(ids, data)):
            return [False] * len(texts)
        return [table.decode(a) != d for a, d in zip(ids, data)]

    def _bytes_table(self) -> "_TokenBytes | None":
        if not hasattr(self, "_table"):
            self._table = _TokenBytes.of(self)
        return self._table

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def decode_batch(self, batch: list[list[int]]) -> list[str]:
        return self._tok.decode_batch(batch, skip_special_tokens=False)

    def to_json(self) -> str:
        return self._tok.to_str()

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


class _TokenBytes:
    """The bytes each id decodes to under a ByteLevel decoder (as Hugging Face's: a token's characters through
    the byte-level alphabet, or its own UTF-8 if one is not in it; an id without a token decodes to nothing)."""

    def __init__(self, pieces: list[bytes]):
        self.size = len(pieces)
        self.lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.flat = np.frombuffer(b"".join(pieces), dtype=np.uint8)

    @classmethod
    def of(cls, tok: "HFTokenizer") -> "_TokenBytes | None":
        decoder = json.loads(tok.to_json()).get("decoder") or {}
        if decoder.get("type") != "ByteLevel":
            return None
        byte_of = {c: b for b, c in _byte_level_alphabet().items()}
        pieces = []
        for i in range(tok.num_ids):
            token = tok._tok.id_to_token(i)
            if token is None:
                pieces.append(b"")
            elif all(c in byte_of for c in token):
                pieces.append(bytes(byte_of[c] for c in token))
            else:
                pieces.append(token.encode("utf-8"))
        return cls(pieces)

    def decode(self, ids: np.ndarray) -> bytes:
        lengths = self.lengths[ids]
        total = int(lengths.sum())
        kind = np.int32 if max(total, self.flat.size) < 2 ** 31 else np.int64  # half the memory, twice as fast
        ends = np.cumsum(lengths, dtype=kind)
        index = np.repeat((self.starts[ids] - ends + lengths).astype(kind), lengths)
        index += np.arange(total, dtype=kind)
        return self.flat[index].tobytes()


# -- specs ------------------------------------------------------------------------------------------------

def parse_bpe_size(spec: str) -> int:
    """N from `bpe:N`; 257 <= N <= 2^20 (256 bytes + eot must fit; see MAX_BPE_VOCAB_SIZE for the cap)."""
    text = spec.split(":", 1)[1]
    try:
        n = int(text)
    except ValueError:
        raise TokenboundError(f"N must be an integer, got {text!r}", param="tokenizer", value=spec) from None
    if n < BYTE_VOCAB_SIZE:
        raise TokenboundError(f"N must be >= {BYTE_VOCAB_SIZE} (256 bytes + eot), got {n}",
                              param="tokenizer", value=spec)
    if n > MAX_BPE_VOCAB_SIZE:
        raise TokenboundError(f"N must be <= 2^20 = {MAX_BPE_VOCAB_SIZE:,} (every model on the "
                              f"store carries an N-row embedding), got {n:,}", param="tokenizer", value=spec)
    return n


def check_tokenizer_spec(spec: str) -> str:
    """Validate the form of a tokenizer spec before any work is done; returns its kind."""
    kind, sep, _ = spec.partition(":")
    if spec == "byte":
        return "byte"
    if kind in ("bpe", "hf", "gguf") and not sep:
        raise TokenboundError(f"expected {kind}:{'N' if kind == 'bpe' else 'PATH'}", param="tokenizer", value=spec)
    if kind == "bpe":
        parse_bpe_size(spec)
        return "bpe"
    if kind in ("hf", "gguf"):
        path = Path(spec.split(":", 1)[1])
        if not path.exists():
            raise TokenboundError("no such file or directory", param="tokenizer", value=spec)
        return kind
    raise TokenboundError("unknown spec (expected byte, bpe:N, hf:PATH or gguf:PATH)", param="tokenizer", value=spec)


def train_bpe(texts: Iterator[str], vocab_size: int, spec: str) -> HFTokenizer:
    """Train a byte-level BPE of exactly `vocab_size` ids (eot `<|endoftext|>` is id 0, then the 256 byte
    symbols, then merges). If the text supports fewer merges the tokenizer has fewer ids, but V stays N."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return HFTokenizer(tok, spec, eot=tok.token_to_id(EOT_TOKEN), vocab_size=vocab_size)


# -- the code of a fitted BPE (``prepare --tokenizer-fit train-charged``, docs/data.md) ----------------------
BPE_CODE = ("Elias-gamma(M + 1) for the number of merges M, then the merges in order as one mixed-radix integer "
            "of ceil(log2 prod_k (256 + k)^2) bits: merge k (0-based) is the pair of ids (a, b), each in "
            "[1, 257 + k), of the tokens it joins; eot is id 0 and the 256 byte symbols are ids 1-256 in character "
            "order (fixed by the spec), merge k makes id 257 + k")


def _bpe_merge_ids(tok: HFTokenizer) -> list[tuple[int, int]]:
    """The merges of a tokenizer made by `train_bpe` as id pairs; a one-line error if it is not of that form."""
    model = json.loads(tok.to_json())["model"]
    vocab, merges = model["vocab"], model["merges"]
    pairs = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    inverse = sorted(vocab, key=vocab.get)
    alphabet = sorted(_byte_level_alphabet().values())
    if inverse[0] != EOT_TOKEN or inverse[1:257] != alphabet or len(inverse) != 257 + len(pairs):
        raise TokenboundError(f"{tok.spec}: not a tokenizer made by bpe:N training (its ids are not eot, the byte "
                              f"symbols, then one id per merge)")
    out = []
    for k, (a, b) in enumerate(pairs):
        if vocab.get(a + b) != 257 + k or not 1 <= vocab[a] < 257 + k or not 1 <= vocab[b] < 257 + k:
            raise TokenboundError(f"{tok.spec}: merge {k} ({a!r}, {b!r}) does not make id {257 + k}")
        out.append((vocab[a], vocab[b]))
    return out


def _gamma_bits(n: int) -> int:
    return 2 * (int(n).bit_length() - 1) + 1


def bpe_code_length(tok: HFTokenizer) -> dict[str, int]:
    """{"bits", "merges"}: the length of `encode_bpe` of `tok` (BPE_CODE), a prefix-free code of the tokenizer."""
    merges = len(_bpe_merge_ids(tok))
    radix_product = 1
    for k in range(merges):
        radix_product *= (256 + k) ** 2
    return {"bits": _gamma_bits(merges + 1) + (radix_product - 1).bit_length(), "merges": merges}


def encode_bpe(tok: HFTokenizer) -> tuple[bytes, int]:
    """(bytes, number of bits used) of BPE_CODE for `tok`; `decode_bpe` inverts it."""
    pairs = _bpe_merge_ids(tok)
    value, product = 0, 1
    for k, (a, b) in enumerate(pairs):
        r = 256 + k
        value = (value * r + (a - 1)) * r + (b - 1)
        product *= r * r
    m1 = len(pairs) + 1
    width = (product - 1).bit_length()
    bits = "0" * (m1.bit_length() - 1) + format(m1, "b") + (format(value, f"0{width}b") if width else "")
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b"", len(bits)


def decode_bpe(data: bytes, vocab_size: int, spec: str) -> HFTokenizer:
    """The tokenizer `encode_bpe` wrote (the same ids, merges and text behaviour as the one `train_bpe` made)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    bits = "".join(format(byte, "08b") for byte in data)
    zeros = len(bits) - len(bits.lstrip("0"))
    merges = int(bits[zeros:2 * zeros + 1], 2) - 1
    product = 1
    for k in range(merges):
        product *= (256 + k) ** 2
    width = (product - 1).bit_length()
    value = int(bits[2 * zeros + 1:2 * zeros + 1 + width] or "0", 2)
    pairs = []
    for k in reversed(range(merges)):
        r = 256 + k
        value, b = divmod(value, r)
        value, a = divmod(value, r)
        pairs.append((a + 1, b + 1))
    pairs.reverse()
    tokens = [EOT_TOKEN] + sorted(_byte_level_alphabet().values())
    for a, b in pairs:
        tokens.append(tokens[a] + tokens[b])
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[(tokens[a], tokens[b]) for a, b in pairs]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT_TOKEN])
    return HFTokenizer(tok, spec, eot=tok.token_to_id(EOT_TOKEN), vocab_size=vocab_size)


def _eos_from_config(directory: Path) -> str | None:
    cfg = directory / "tokenizer_config.json"
    if not cfg.exists():
        return None
    try:
        eos = json.loads(cfg.read_text()).get("eos_token")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise TokenboundError(f"{cfg}: not a valid tokenizer_config.json") from None
    return eos.get("content") if isinstance(eos, dict) else eos


def load_hf_tokenizer(spec: str, eot: int | None = None, vocab_size: int | None = None) -> HFTokenizer:
    """`hf:PATH`: a tokenizer.json (or a directory holding one). eot: `--eot`, else the token
    `<|endoftext|>`, else the eos token named in a sibling tokenizer_config.json."""
    from tokenizers import Tokenizer

    path = Path(spec.split(":", 1)[1])
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise TokenboundError("no tokenizer.json found", param="tokenizer", value=spec)
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust side raises a bare Exception on malformed files
        raise TokenboundError(f"not a Hugging Face tokenizer.json ({str(e).splitlines()[0]})",
                              param="tokenizer", value=spec) \
            from None
    if eot is None:
        eot = tok.token_to_id(EOT_TOKEN)
    if eot is None:
        eos = _eos_from_config(file.parent)
        eot = tok.token_to_id(eos) if eos else None
    if eot is None:
        raise TokenboundError(f"no {EOT_TOKEN} or eos token found; pass --eot ID", param="tokenizer", value=spec)
    return HFTokenizer(tok, spec, eot, _vocab_size(tok, vocab_size, spec))


def load_gguf_tokenizer(spec: str, eot: int | None = None, vocab_size: int | None = None) -> HFTokenizer:
    """`gguf:PATH`: the tokenizer inside a GGUF model file, converted by transformers to a fast tokenizer.
    eot is the model's eos token unless `--eot` overrides it."""
    path = Path(spec.split(":", 1)[1])
    if not path.is_file():
        raise TokenboundError("not a file", param="tokenizer", value=spec)
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except ImportError as e:
        raise TokenboundError(f"needs transformers and gguf ({e})", param="tokenizer", value=spec) from None
    except Exception as e:  # transformers raises many types on unsupported or corrupt GGUF files
        raise TokenboundError(f"cannot read its tokenizer ({str(e).splitlines()[0]})",
                              param="tokenizer", value=spec) from None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TokenboundError("transformers gave no fast tokenizer for this file", param="tokenizer", value=spec)
    if eot is None:
        eot = hf.eos_token_id
    if eot is None:
        raise TokenboundError("the model names no eos token; pass --eot ID", param="tokenizer", value=spec)
    return HFTokenizer(backend, spec, eot, _vocab_size(backend, vocab_size, spec))


def _vocab_size(tok, override: int | None, spec: str) -> int:
    n = tok.get_vocab_size(with_added_tokens=True)
    if override is None:
        return n
    if override < n:
        raise TokenboundError(f"smaller than the {n} ids of --tokenizer {spec}", param="vocab_size", value=override)
    return override


def build_tokenizer(spec: str, *, eot: int | None = None, vocab_size: int | None = None) -> TextTokenizer:
    """A ready tokenizer for every spec except `bpe:N`, which must be trained (see `train_bpe`)."""
    kind = check_tokenizer_spec(spec)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        return load_hf_tokenizer(spec, eot, vocab_size)
    if kind == "gguf":
        return load_gguf_tokenizer(spec, eot, vocab_size)
    raise ValueError(f"{spec} must be trained, use train_bpe")


def load_store_tokenizer(store) -> TextTokenizer | None:
    """The tokenizer that produced `store`'s ids (from its manifest spec and tokenizer.json), or None."""
    spec = store.manifest.get("tokenizer")
    if spec is None:
        return None
    if spec == "byte":
        return ByteTokenizer()
    file = Path(store.path) / "tokenizer.json"
    if not file.exists():
        return None
    return HFTokenizer.from_json(file.read_text(), spec, store.eot, store.vocab_size)
