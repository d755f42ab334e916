import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokenbound.data.tokenizers import (BYTE_EOT, EOT_TOKEN, ByteTokenizer, HFTokenizer, build_tokenizer,
                                        check_tokenizer_spec, load_hf_tokenizer, parse_bpe_size, train_bpe)
from tokenbound.errors import TokenboundError

TRAIN_TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "Grüße aus Köln — naïve café, 東京 and emoji 😀 too.\n" * 3,
    "for i in range(10):\n    print(i, i * i)\n" * 5,
]
# Any str, including lone surrogates' neighbours, control characters and the literal eot spelling.
any_text = st.one_of(st.text(), st.text().map(lambda s: s + EOT_TOKEN + s))


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(iter(TRAIN_TEXTS), 320, "bpe:320")


@given(any_text)
@settings(max_examples=200, deadline=None)
def test_byte_tokenizer_roundtrip_and_ids_are_utf8_bytes(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert np.array_equal(tok.encode_batch([text])[0], ids)


def test_byte_tokenizer_vocab_eot_and_bad_ids():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eot) == (257, 256)
    assert tok.decode([104, BYTE_EOT, 105]) == "hi"  # eot carries no text
    assert tok.decode([0xC3]) == "\ufffd"  # half a character
    with pytest.raises(TokenboundError, match="257"):
        tok.decode([257])


@given(any_text)
@settings(max_examples=100, deadline=None)
def test_byte_tokenizer_json_is_equivalent(text):
    hf = HFTokenizer.from_json(ByteTokenizer().to_json(), "byte", BYTE_EOT, 257)
    assert hf.encode(text) == ByteTokenizer().encode(text)
    assert hf.decode(hf.encode(text)) == text
    assert hf.token_to_id(EOT_TOKEN) == BYTE_EOT


@given(any_text)
@settings(max_examples=300, deadline=None)
def test_bpe_roundtrip_is_exact_and_never_emits_eot(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.eot not in ids
    assert all(0 <= i < bpe.vocab_size for i in ids)


def test_bpe_vocab_is_exactly_n_and_training_is_deterministic(bpe):
    assert bpe.vocab_size == 320 and bpe.eot == 0
    assert bpe.num_ids == 320
    again = train_bpe(iter(TRAIN_TEXTS), 320, "bpe:320")
    assert again.to_json() == bpe.to_json()
    # merges actually learned: a frequent word is one token, shorter than its bytes
    assert len(bpe.encode("range")) < len(b"range")


def test_bpe_with_more_ids_than_merges_keeps_v_equal_n():
    tok = train_bpe(iter(["ab ab ab"]), 5000, "bpe:5000")
    assert tok.vocab_size == 5000
    assert tok.num_ids < 5000
    assert tok.decode(tok.encode("abc ab")) == "abc ab"


def test_bpe_minimum_257_is_bytes_only():
    tok = train_bpe(iter(TRAIN_TEXTS), 257, "bpe:257")
    assert len(tok.encode("héllo")) == len("héllo".encode())


@pytest.mark.parametrize("spec,msg", [("bpe:256", ">= 257"), ("bpe:0", ">= 257"), (f"bpe:{2**20 + 1}", "2\\^20"),
                                      ("bpe:100000000", "<= 2\\^20"),
                                      ("bpe:abc", "integer"), ("bpe:", "integer")])
def test_bpe_size_errors(spec, msg):
    with pytest.raises(TokenboundError, match=msg):
        parse_bpe_size(spec)


def test_bpe_size_bounds_accepted():
    assert parse_bpe_size("bpe:257") == 257 and parse_bpe_size(f"bpe:{2**20}") == 2 ** 20


@pytest.mark.parametrize("spec,msg", [("wordpiece", "unknown spec"), ("bytes", "unknown spec"),
                                      ("sentencepiece:x", "unknown spec"), ("hf", "expected hf:PATH"),
                                      ("bpe", "expected bpe:N"), ("gguf", "expected gguf:PATH")])
def test_unknown_or_incomplete_spec(spec, msg):
    with pytest.raises(TokenboundError, match=msg):
        check_tokenizer_spec(spec)


def test_missing_paths(tmp_path):
    for spec in (f"hf:{tmp_path}/none.json", f"gguf:{tmp_path}/none.gguf"):
        with pytest.raises(TokenboundError, match="no such file"):
            check_tokenizer_spec(spec)
    with pytest.raises(TokenboundError, match="no tokenizer.json"):
        load_hf_tokenizer(f"hf:{tmp_path}")


def _save_tokenizer(directory, specials, eos=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TRAIN_TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                             show_progress=False))
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if eos is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos}))
    return tok


def test_hf_tokenizer_from_file_or_directory(tmp_path):
    saved = _save_tokenizer(tmp_path / "t", ["<pad>", EOT_TOKEN])
    for spec in (f"hf:{tmp_path}/t", f"hf:{tmp_path}/t/tokenizer.json"):
        tok = build_tokenizer(spec)
        assert tok.eot == saved.token_to_id(EOT_TOKEN) == 1
        assert tok.vocab_size == saved.get_vocab_size(with_added_tokens=True)
        text = "x = f(y)  # <|endoftext|> is only text here\n"
        assert tok.decode(tok.encode(text)) == text and tok.eot not in tok.encode(text)


def test_hf_eot_from_config_eos_or_flag(tmp_path):
    _save_tokenizer(tmp_path / "a", ["<s>", "</s>"], eos={"content": "</s>"})
    assert load_hf_tokenizer(f"hf:{tmp_path}/a").eot == 1
    assert load_hf_tokenizer(f"hf:{tmp_path}/a", eot=0).eot == 0
    _save_tokenizer(tmp_path / "b", ["<s>"])
    with pytest.raises(TokenboundError, match="--eot"):
        load_hf_tokenizer(f"hf:{tmp_path}/b")
    with pytest.raises(TokenboundError, match="outside the vocabulary"):
        load_hf_tokenizer(f"hf:{tmp_path}/b", eot=10 ** 6)


def test_hf_vocab_size_override(tmp_path):
    saved = _save_tokenizer(tmp_path / "t", [EOT_TOKEN])
    n = saved.get_vocab_size(with_added_tokens=True)
    assert load_hf_tokenizer(f"hf:{tmp_path}/t", vocab_size=n + 64).vocab_size == n + 64
    with pytest.raises(TokenboundError, match="^vocab_size"):
        load_hf_tokenizer(f"hf:{tmp_path}/t", vocab_size=n - 1)


def test_hf_malformed_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenboundError, match="not a Hugging Face tokenizer.json"):
        load_hf_tokenizer(f"hf:{tmp_path}")


@pytest.mark.slow
def test_gguf_tokenizer_from_smollm2():
    from tokenbound.assets import smollm2_gguf

    spec = f"gguf:{smollm2_gguf()}"
    tok = build_tokenizer(spec)
    assert tok.vocab_size == 49152
    assert tok.eot == 2 and tok._tok.id_to_token(2) == "<|im_end|>"  # the model's eos
    text = "def f(x):\n    return x ** 2  # café <|endoftext|> 😀\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and tok.eot not in ids and 0 not in ids


# -- cutting huge documents ------------------------------------------------------------------------------
from tokenbound.data.chunking import cuttable, safe_parts  # noqa: E402

text_atoms = st.sampled_from(list("ab Z9\n\t'sdl.,_-é東😀\r") + ["  ", "\n\n", " 's", "'ll", "\u0301", "\u00a0",
                                                                "\u2028", "\x1c", "<|endoftext|>"])


@given(st.lists(text_atoms, max_size=80), st.integers(1, 12), st.integers(1, 9))
@example(["a", " ", "\n", "b"], 3, 2)   # whitespace before the newline: not a safe cut
@example(["a", "\n\n", "b"], 3, 1)     # a run of newlines: not a safe cut
@example(["a", "  ", "b"], 2, 1)        # cut before " b" is safe
@settings(max_examples=1500, deadline=None)
def test_safe_parts_pretokenize_and_encode_like_the_whole_text(bpe, atoms, part_chars, piece_chars):
    """BPE never merges across pre-tokens, so equal pre-tokens (and hence equal ids) is the criterion."""
    text = "".join(atoms)
    pieces = [text[i:i + piece_chars] for i in range(0, len(text), piece_chars)]
    parts = list(safe_parts(pieces, any_boundary=False, part_chars=part_chars))
    assert "".join(parts) == text
    pre = bpe._tok.pre_tokenizer.pre_tokenize_str
    assert [w for p in parts for w, _ in pre(p)] == [w for w, _ in pre(text)]
    assert [i for p in parts for i in bpe.encode(p)] == bpe.encode(text)
    byte_parts = list(safe_parts(pieces, any_boundary=True, part_chars=part_chars))
    assert "".join(byte_parts) == text and all(len(p) <= part_chars for p in byte_parts[:-1])


def test_safe_parts_really_cut_and_only_our_tokenizers_are_cuttable():
    text = "word\n" * 1000
    parts = list(safe_parts([text], any_boundary=False, part_chars=64))
    assert len(parts) > 50 and all(len(p) <= 65 for p in parts)
    assert list(safe_parts(["x" * 500], any_boundary=False, part_chars=64)) == ["x" * 500]  # no safe cut
    assert cuttable("byte") and cuttable("bpe:300") and not cuttable("hf:x") and not cuttable("gguf:x")


def test_bpe_code_is_decoded_back_to_the_same_tokenizer(bpe):
    import math

    from tokenbound.data.tokenizers import bpe_code_length, decode_bpe, encode_bpe

    data, bits = encode_bpe(bpe)
    code = bpe_code_length(bpe)
    merges = code["merges"]
    assert merges == bpe.num_ids - 257 > 0 and len(data) == math.ceil(bits / 8)
    # Elias gamma of M + 1, then ceil(log2 prod (256 + k)^2) bits for the merges
    payload = math.ceil(sum(2 * math.log2(256 + k) for k in range(merges)) - 1e-9)
    assert bits == code["bits"] == 2 * int(math.log2(merges + 1)) + 1 + payload
    back = decode_bpe(data, bpe.vocab_size, bpe.spec)
    assert back.to_json() == bpe.to_json()
    for text in TRAIN_TEXTS + ["unseen ßtring — 😀"]:
        assert back.encode(text) == bpe.encode(text)
