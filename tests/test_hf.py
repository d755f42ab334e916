"""Hugging Face / GGUF models behind LanguageModel: loading, log-probs, document-aware masking."""
from __future__ import annotations

import pytest
import torch

import tokenbound
from tokenbound.errors import TokenboundError
from tokenbound.models import hf
from tokenbound.models.base import segments_from_ids

V = 97


def _tiny(kind: str, tie: bool = False):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                            max_position_embeddings=64, tie_word_embeddings=tie))
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=V, n_positions=64,
                                      bos_token_id=0, eos_token_id=0))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param) / "model"
    _tiny(request.param).save_pretrained(d, safe_serialization=True)
    return d


def _packed_row(seed=1, length=24, eot=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (1, length), generator=g)
    ids[0, 6] = eot
    ids[0, 15] = eot
    return ids


def test_load_dispatch_and_attributes(tiny_dir):
    model = tokenbound.load(tiny_dir)
    assert isinstance(model, hf.HFLanguageModel)
    assert model.vocab_size == model.module.get_output_embeddings().weight.shape[0] == V
    assert model.max_context == 64
    assert model.source["type"] == "hf" and len(model.source["sha256"]) == 64
    assert model.describe()["architecture"] in ("llama", "gpt2")


def test_log_probs_match_the_hf_module(tiny_dir):
    model = tokenbound.load(tiny_dir)
    ids = _packed_row()
    lp = model.log_probs(ids)
    assert lp.dtype == torch.float32 and lp.shape == (1, 24, V)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 24), atol=1e-5)
    with torch.no_grad():
        ref = torch.log_softmax(model.module(input_ids=ids).logits.float(), -1)
    assert torch.allclose(lp, ref, atol=1e-6)
    assert torch.equal(model.log_probs(ids), lp)  # deterministic (eval mode)


def test_packed_row_equals_each_document_alone(tiny_dir):
    model = tokenbound.load(tiny_dir)
    ids = _packed_row()
    packed = model.log_probs(ids, segments_from_ids(ids, 0))
    alone = torch.cat([model.log_probs(ids[:, a:b]) for a, b in ((0, 6), (6, 15), (15, 24))], dim=1)
    assert torch.allclose(packed, alone, atol=1e-5)
    # Without segments the later documents see the earlier ones, so the masking is doing real work.
    assert not torch.allclose(model.log_probs(ids)[:, 7:], alone[:, 7:], atol=1e-3)


def test_batch_rows_with_different_segments(tiny_dir):
    model = tokenbound.load(tiny_dir)
    a, b = _packed_row(1), _packed_row(2)
    b[0, 6] = 5  # row b has only two documents
    ids = torch.cat([a, b])
    both = model.log_probs(ids, segments_from_ids(ids, 0))
    assert torch.allclose(both[0], model.log_probs(a, segments_from_ids(a, 0))[0], atol=1e-5)
    assert torch.allclose(both[1], model.log_probs(b, segments_from_ids(b, 0))[0], atol=1e-5)


def test_refusals(tiny_dir, monkeypatch, tmp_path):
    model = tokenbound.load(tiny_dir)
    with pytest.raises(TokenboundError, match="exceed the model's context 64"):
        model.log_probs(torch.zeros(1, 65, dtype=torch.long))
    ids = _packed_row()
    monkeypatch.setattr(hf, "SEGMENT_AWARE", frozenset())
    with pytest.raises(TokenboundError, match="document-aware masking"):
        model.log_probs(ids, segments_from_ids(ids, 0))
    # a single segment needs no special masking, whatever the architecture
    single = torch.zeros_like(ids)
    assert torch.allclose(model.log_probs(ids, single), model.log_probs(ids), atol=1e-6)
    with pytest.raises(TokenboundError, match="no config.json"):
        hf.load_hf(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"not a gguf")
    with pytest.raises(TokenboundError, match="x.gguf"):
        tokenbound.load(tmp_path / "x.gguf")


@pytest.mark.slow
def test_smollm2_gguf_loads_and_masks_documents():
    from tokenbound.assets import smollm2_gguf

    torch.set_num_threads(1)
    path = smollm2_gguf()
    model = tokenbound.load(path)
    assert model.vocab_size == 49152 and model.max_context == 8192
    assert model.model_type == "llama" and model.source["type"] == "gguf"
    tok = hf.load_gguf_tokenizer(path)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    first = tok("def add(a, b):\n    return a + b\n")["input_ids"]
    second = tok("import os\nprint(os.getcwd())\n")["input_ids"]
    ids = torch.tensor([first + [eot] + second])
    packed = model.log_probs(ids, segments_from_ids(ids, eot))
    assert torch.isfinite(packed).all()
    n = len(first)
    assert torch.allclose(packed[:, n:], model.log_probs(ids[:, n:]), atol=1e-4)
    # a pretrained model predicts code far better than uniform (log2 49152 = 15.6 bits)
    nats = -packed[0, :-1].gather(-1, ids[0, 1:, None]).mean()
    assert nats / torch.log(torch.tensor(2.0)) < 8.0
