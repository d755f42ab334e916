"""GPT: document-aware attention, determinism, the coded state and the Run loader."""
import math

import pytest
import torch

from tokenbound.errors import TokenboundError
from tokenbound.models.base import segments_from_ids
from tokenbound.models.gpt import (GPTConfig, GPTLanguageModel, build_model, coded_state_dict, load_coded_state_dict,
                                   parameter_counts, position_ids)

torch.set_num_threads(1)
EOT = 0


def small_config(**kw):
    base = dict(vocab_size=40, block_size=48, n_layer=2, n_head=2, n_embd=32, eot=EOT, seed=5)
    return GPTConfig(**{**base, **kw})


def random_docs(lengths, seed=0, vocab=40):
    """Documents as the doc rule sees them: each starts with the eot that ended the previous one."""
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.tensor([EOT]), torch.randint(1, vocab, (n,), generator=g)]) for n in lengths]


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("layers", ["dense", "lora:4", "monarch:2"])
def test_packed_window_scores_each_document_as_if_alone(positions, layers):
    model = build_model(small_config(positions=positions, layers=layers)).eval()
    docs = random_docs([6, 11, 3])
    packed = torch.cat(docs)[None]
    seg = segments_from_ids(packed, EOT)
    with torch.no_grad():
        lp_packed = torch.log_softmax(model(packed, segments=seg), -1)[0]
        start = 0
        for d in docs:
            alone = torch.log_softmax(model(d[None]), -1)[0]
            assert torch.allclose(lp_packed[start:start + len(d)], alone, atol=1e-5), (positions, layers)
            start += len(d)
        # without segments the later documents see earlier ones: the scores differ
        lp_plain = torch.log_softmax(model(packed), -1)[0]
    assert not torch.allclose(lp_plain[len(docs[0]):], lp_packed[len(docs[0]):], atol=1e-3)


def test_stream_attention_is_causal():
    model = build_model(small_config(positions="rotary")).eval()
    ids = random_docs([20])[0][None]
    changed = ids.clone()
    changed[0, 12:] = (changed[0, 12:] % 39) + 1
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :12], b[0, :12], atol=1e-6) and not torch.allclose(a[0, 12:], b[0, 12:])


def test_position_ids_restart_at_every_segment():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [3, 3, 3, 3, 3, 3, 3, 3, 4]])
    assert position_ids(seg, 2, 9, "cpu").tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7, 0]]
    assert position_ids(None, 2, 4, "cpu").tolist() == [[0, 1, 2, 3]] * 2


@pytest.mark.parametrize("layers", ["dense", "lora:4", "kron", "monarch:2", "attn=lora:2,mlp=kron,head=dense"])
def test_build_is_deterministic_and_seeded(layers):
    cfg = small_config(layers=layers)
    a, b = build_model(cfg), build_model(GPTConfig.from_dict(cfg.to_dict()))
    sa, sb = a.state_dict(keep_vars=False), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert all(torch.equal(ba[k], bb[k]) for k in ba)
    c = build_model(small_config(layers=layers, seed=6))
    assert any(not torch.equal(p, q) for p, q in zip(coded_state_dict(a).values(), coded_state_dict(c).values()))


def test_coded_state_is_exactly_the_trainable_tensors():
    model = build_model(small_config(layers="lora:4"))
    coded = coded_state_dict(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(coded) == trainable and all(not t.requires_grad for t in coded.values())
    counts = parameter_counts(model)
    assert counts["coded"] == sum(t.numel() for t in coded.values())
    # LoRA's frozen bases are seeded buffers: counted as frozen, not coded
    assert counts["frozen"] == sum(b.numel() for n, b in model.named_buffers() if n.endswith("base_weight")) > 0
    # tied embeddings (dense head) are stored once
    dense = build_model(small_config())
    assert "lm_head.weight" not in coded_state_dict(dense) and dense.lm_head is None


def test_load_coded_state_roundtrip_and_strictness():
    cfg = small_config(layers="kron")
    src, dst = build_model(cfg), build_model(small_config(layers="kron", seed=99))
    load_coded_state_dict(dst, {k: v.clone() for k, v in coded_state_dict(src).items()})
    ids = random_docs([15])[0][None]
    with torch.no_grad():
        assert torch.equal(src(ids), dst(ids))
    state = coded_state_dict(src)
    missing = dict(state)
    missing.pop(next(iter(missing)))
    with pytest.raises(TokenboundError, match="missing"):
        load_coded_state_dict(dst, missing)
    name = next(iter(state))
    with pytest.raises(TokenboundError, match="shape"):
        load_coded_state_dict(dst, {**state, name: torch.zeros(3)})


def test_config_roundtrip_and_validation():
    cfg = small_config(positions="rotary", subspace_dim=None, context="stream")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TokenboundError, match="unknown field"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_layers": 3})
    with pytest.raises(TokenboundError, match="divisible"):
        small_config(n_head=3)
    with pytest.raises(TokenboundError, match="positions"):
        small_config(positions="alibi")
    with pytest.raises(TokenboundError, match="^layers"):
        build_model(small_config(layers="sparse:3"))


def test_language_model_interface():
    cfg = small_config(dropout=0.3)
    lm = GPTLanguageModel(build_model(cfg), cfg)
    docs = random_docs([5, 9])
    ids = torch.cat(docs)[None]
    lp = lm.log_probs(ids, segments_from_ids(ids, EOT))
    assert lp.shape == (1, 16, 40) and lp.dtype == torch.float32 and not lp.requires_grad
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 16), atol=1e-5)
    assert torch.equal(lp, lm.log_probs(ids, segments_from_ids(ids, EOT)))  # eval mode: dropout off
    assert torch.allclose(lp[0, 6:], lm.log_probs(docs[1][None])[0], atol=1e-5)
    d = lm.describe()
    assert lm.max_context == 48 and lm.vocab_size == 40
    assert d["parameterization"] == "dense" and d["coded_params"] == parameter_counts(lm.module)["coded"]
    assert d["frozen_params"] == 0


def test_untrained_model_predicts_near_uniform():
    # GPT-2 init: initial loss close to ln V (a sanity check of the init scale)
    cfg = small_config()
    model = build_model(cfg).eval()
    ids = random_docs([40])[0][None]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:])
    assert abs(float(loss) - math.log(40)) < 0.3


@pytest.mark.parametrize("layers", ["dense", "lora:4"])
def test_subspace_model_codes_only_z_and_starts_at_the_base_model(layers):
    cfg = small_config(layers=layers, subspace_dim=30)
    model = build_model(cfg)
    coded = coded_state_dict(model)
    assert list(coded) == ["z"] and coded["z"].shape == (30,) and parameter_counts(model)["coded"] == 30
    base = build_model(small_config(layers=layers)).eval()
    ids = random_docs([12])[0][None]
    with torch.no_grad():
        assert torch.allclose(model.eval()(ids), base(ids), atol=1e-6)  # z = 0 at init
        load_coded_state_dict(model, {"z": torch.full((30,), 0.5)})
        moved = model(ids)
        again = build_model(cfg).eval()
        load_coded_state_dict(again, {"z": torch.full((30,), 0.5)})
        assert torch.equal(again(ids), moved) and not torch.allclose(moved, base(ids), atol=1e-4)
    # document-aware attention survives the functional call of the wrapper
    docs = random_docs([4, 7])
    packed = torch.cat(docs)[None]
    with torch.no_grad():
        lp = model(packed, segments=segments_from_ids(packed, EOT))
        assert torch.allclose(lp[0, 5:], model(docs[1][None])[0], atol=1e-5)
