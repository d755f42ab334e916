"""`train --init-from RUN`: full and LoRA fine-tuning start at the base, LoRA is written merged, lineage recorded."""
import json

import pytest
import torch

from tokenbound.cli import main as cli_main
from tokenbound.errors import TimeLimitReached, TokenboundError
from tokenbound.evaluate.heldout import seen_stores
from tokenbound.models.gpt import build_model, load_run_module
from tokenbound.train import init as finetune
from tokenbound.train.trainer import train

torch.set_num_threads(1)
MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}
TRAIN = {"steps": 6, "batch_size": 4, "eval_interval": 6, "checkpoint_interval": 3, "warmup_steps": 1, "lr": 3e-3}


def config(tmp_path, name, model=None):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"model": {**MODEL, **(model or {})}, "train": TRAIN}))
    return path


@pytest.fixture(scope="module")
def stores_and_base(tmp_path_factory, periodic_store):
    root = tmp_path_factory.mktemp("finetune")
    pre, chat = periodic_store(root / "pre", seed=0), periodic_store(root / "chat", seed=5, docs=60)
    base = root / "base"
    train(pre.path, base, config=config(root, "base"), progress=False)
    return root, pre.path, chat.path, base


def test_lora_model_starts_exactly_at_the_base(stores_and_base):
    root, pre, chat, base = stores_and_base
    base_module, base_cfg = load_run_module(base)
    import dataclasses

    lora = build_model(dataclasses.replace(base_cfg, layers="attn=lora:2,mlp=lora:2", seed=7))
    finetune.copy_weights(lora, base_module)
    ids = torch.randint(0, base_cfg.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.allclose(lora.eval()(ids), base_module(ids), atol=1e-6)
        merged, merged_cfg = finetune.merged(lora, base_cfg)
        assert merged_cfg.layers == "dense" and torch.allclose(merged.eval()(ids), base_module(ids), atol=1e-6)


@pytest.mark.parametrize("layers", ["dense", "attn=lora:2,mlp=lora:2"])
def test_finetune_moves_away_from_the_base_and_records_its_lineage(stores_and_base, layers):
    root, pre, chat, base = stores_and_base
    out = root / f"ft-{layers.replace(',', '_').replace(':', '').replace('=', '')}"
    train(chat, out, config=config(root, "ft"), layers=layers, init_from=base, progress=False)
    module, cfg = load_run_module(out)  # self-contained: a dense Run of the base's shape, whatever was trained
    base_module, base_cfg = load_run_module(base)
    assert cfg.layers == "dense" and cfg.n_embd == base_cfg.n_embd
    assert not torch.equal(module.wte.weight, base_module.wte.weight)  # it was trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["init_from"]["sha256"] == finetune.open_base(base).sha256
    assert ("merged_adapter" in manifest["init_from"]) == (layers != "dense")
    seen = {s.sha256 for s in seen_stores(out, "tokenbound.run")[0]}
    pre_sha = json.loads((pre / "manifest.json").read_text())["sha256"]
    chat_sha = json.loads((chat / "manifest.json").read_text())["sha256"]
    assert seen == {pre_sha, chat_sha}  # the pretraining store counts as seen


def test_interrupted_lora_finetune_resumes_from_the_base(stores_and_base):
    root, pre, chat, base = stores_and_base
    full, part = root / "lora-full", root / "lora-part"
    layers = "attn=lora:2,mlp=lora:2"
    train(chat, full, config=config(root, "ft"), layers=layers, init_from=base, progress=False)
    with pytest.raises(TimeLimitReached):  # interrupted before its first step: only the checkpoint exists
        train(chat, part, config=config(root, "ft"), layers=layers, init_from=base, progress=False,
              max_minutes=1e-9)
    train(chat, part, resume=True, progress=False)  # the adapter over the same base, found again by its sha256
    with pytest.raises(TokenboundError, match="^resume: .*merged"):
        train(chat, part, resume=True, steps=8, progress=False)
    a, b = load_run_module(full)[0], load_run_module(part)[0]
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_bad_init_from_is_one_line_naming_the_flag(stores_and_base, tmp_path, capsys):
    root, pre, chat, base = stores_and_base
    with pytest.raises(TokenboundError, match="^init_from .*n_embd") as e:  # the parameter; the CLI's flag:
        train(chat, tmp_path / "a", config=config(root, "wide", {"n_embd": 32}), init_from=base, progress=False)
    assert e.value.cli_message().startswith(f"--init-from {base}: the base has n_embd")
    with pytest.raises(TokenboundError, match="^layers kron: "):
        train(chat, tmp_path / "b", config=config(root, "ft"), layers="kron", init_from=base, progress=False)
    with pytest.raises(TokenboundError, match="^init_from "):
        train(chat, tmp_path / "c", config=config(root, "ft"), init_from=tmp_path / "nothing", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b.partial").exists()
    rc = cli_main(["train", "--data", str(chat), "--config", str(config(root, "ft")), "--init-from",
                   str(tmp_path / "nothing"), "--out", str(tmp_path / "d"), "--no-progress"])
    assert rc == 2 and "--init-from" in capsys.readouterr().err
