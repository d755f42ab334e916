"""The scorer: exact per-position numbers, block == token, resumable after kill -9, distributed == single."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenbound.bounds.stats import TokenStats
from tokenbound.data.context import ContextRule, eot_doc_offsets, extended_slice
from tokenbound.data.sampling import SamplingPlan, plan_rows
from tokenbound.data.store import write_store
from tokenbound.errors import TokenboundError
from tokenbound.evaluate.forward import position_stats, score_rows
from tokenbound.evaluate.score import model_id, score
from tokenbound.models.base import LanguageModel, segments_from_ids

V, EOT = 11, 0
HERE = Path(__file__).resolve().parent


# -- tiny models ---------------------------------------------------------------------------------------------
class BigramModel(LanguageModel):
    """ln p(next | current token) from a fixed random table: causal, and segment-respecting by construction."""

    def __init__(self, vocab_size=V, seed=0, max_context=None):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.log_softmax(torch.randn(vocab_size, vocab_size, generator=g) * 2, dim=-1)
        self.vocab_size, self.max_context = vocab_size, max_context

    def log_probs(self, ids, segments=None):
        return self.table[ids]

    def describe(self):
        return {**super().describe(), "table_sha": hashlib.sha256(self.table.numpy().tobytes()).hexdigest()}


class TinyCausal(torch.nn.Module, LanguageModel):
    """One attention layer with positions restarting per segment and attention masked to (causal ∧ same segment)."""

    def __init__(self, vocab_size=V, dim=16, max_context=16, seed=0):
        torch.nn.Module.__init__(self)
        torch.manual_seed(seed)
        self.vocab_size, self.max_context = vocab_size, max_context
        self.tok = torch.nn.Embedding(vocab_size, dim)
        self.pos = torch.nn.Embedding(max_context, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(), torch.nn.Linear(2 * dim, dim))
        self.head = torch.nn.Linear(dim, vocab_size)
        self.eval()

    def log_probs(self, ids, segments=None):
        B, T = ids.shape
        if segments is None:
            segments = torch.zeros_like(ids)
        t = torch.arange(T, device=ids.device).expand(B, T)
        first = torch.where(torch.cat([torch.ones_like(ids[:, :1], dtype=torch.bool),
                                       segments[:, 1:] != segments[:, :-1]], 1), t, torch.zeros_like(t))
        pos = t - torch.cummax(first, dim=1).values
        x = self.tok(ids) + self.pos(pos)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        mask = (t[:, :, None] >= t[:, None, :]) & (segments[:, :, None] == segments[:, None, :])
        att = (q @ k.transpose(1, 2)) / q.shape[-1] ** 0.5
        x = x + torch.softmax(att.masked_fill(~mask, float("-inf")), -1) @ v
        x = x + self.mlp(x)
        return torch.log_softmax(self.head(x), dim=-1)

    def forward(self, ids):  # pragma: no cover - nn.Module requirement
        return self.log_probs(ids)


class Counting(LanguageModel):
    """Wraps a model, counts forward passes, optionally sleeps (to be killed mid-run)."""

    def __init__(self, inner, delay=0.0):
        self.inner, self.delay, self.calls = inner, delay, 0
        self.vocab_size, self.max_context = inner.vocab_size, inner.max_context

    def log_probs(self, ids, segments=None):
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.log_probs(ids, segments)

    def describe(self):
        return self.inner.describe()


class NaNModel(BigramModel):
    def log_probs(self, ids, segments=None):
        out = super().log_probs(ids, segments).clone()
        out[ids == 3] = float("nan")
        return out


# -- data -----------------------------------------------------------------------------------------------------
def make_stream(seed=0, docs=12, max_len=30):
    rng = np.random.default_rng(seed)
    parts = [np.append(rng.integers(1, V, size=rng.integers(0, max_len)), EOT) for _ in range(docs)]
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    return np.concatenate(parts), offsets


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: threads only add contention on the shared CPU (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tokens, offsets = make_stream()
    return write_store(tmp_path_factory.mktemp("store") / "s", tokens, offsets, V, EOT)


@torch.no_grad()
def direct_stats(model, tokens, rule, positions):
    """Reference: one unbatched forward per position with exactly its context; float64 softmax."""
    offsets = eot_doc_offsets(tokens, EOT)
    starts, _ = rule.contexts(positions, offsets)
    out = []
    for i, s in zip(positions, starts):
        row = torch.from_numpy(extended_slice(tokens, EOT, int(s), int(i)))[None]
        seg = segments_from_ids(row, EOT) if rule.is_doc else None
        lp = model.log_probs(row, seg)[0, -1].double()
        p = torch.softmax(lp, -1)
        t = int(tokens[i])
        true = p[t]
        rank = int((p > true).sum()) + int((p[:t] == true).sum()) + 1  # ties: lower ids first
        out.append((float(true), rank, float(-(p * torch.log2(p)).sum())))
    return np.array(out)


# -- tests ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["doc:8", "stream:8", "doc:8/4", "stream:6/3"])
@pytest.mark.parametrize("make_model", [BigramModel, TinyCausal])
def test_token_sampler_matches_direct_per_position_forward(tmp_path, store, rule, make_model):
    model = make_model()
    stats = score(model, store, rule, "token", 24, seed=1, out_dir=tmp_path / "o", batch_size=7, shard_size=10,
                  progress=False)
    assert len(stats) == 24 and stats.draw.tolist() == list(range(24))
    ref = direct_stats(model, np.asarray(store.tokens), ContextRule.parse(rule), stats.positions)
    np.testing.assert_allclose(stats.prob, ref[:, 0], rtol=1e-5)
    assert stats.rank.tolist() == ref[:, 1].astype(int).tolist()
    np.testing.assert_allclose(stats.entropy_bits, ref[:, 2], rtol=1e-5)
    assert stats.meta["sampler"] == "token" and stats.meta["context_rule"] == rule
    assert stats.meta["population_tokens"] == store.num_tokens and stats.meta["seed"] == 1
    assert TokenStats.load(tmp_path / "o" / "tokenstats.npz").prob.tolist() == stats.prob.tolist()


@pytest.mark.parametrize("rule", ["doc:8/4", "stream:8/4", "doc:6/6", "doc:5"])
def test_block_sampler_equals_token_sampler_on_same_positions(tmp_path, store, rule):
    model = TinyCausal()
    r = ContextRule.parse(rule)
    stats = score(model, store, r, "block", 15, seed=2, out_dir=tmp_path / "b", batch_size=4, shard_size=6,
                  progress=False)
    # each draw is one window's scored positions
    w = r.window_of(stats.positions)
    for d in range(15):
        sel = stats.draw == d
        win = r.window_bounds(w[sel][:1], 0, store.num_tokens)
        assert (w[sel] == w[sel][0]).all()
        assert stats.positions[sel].tolist() == list(range(int(win.first_scored[0]), int(win.end_scored[0])))
    plan = SamplingPlan("token", 0, stats.positions, store.num_tokens)
    rows = plan_rows(plan, r, slice(None), store.num_tokens, eot_doc_offsets(store.tokens, EOT))
    tok = score_rows(model, store.tokens, EOT, rows, use_segments=r.is_doc, batch_size=5)
    np.testing.assert_allclose(stats.prob, tok.prob, rtol=1e-5)
    np.testing.assert_allclose(stats.entropy_bits, tok.entropy_bits, rtol=1e-5)
    assert (stats.rank == tok.rank).all()
    assert stats.meta["population_windows"] == r.num_windows(0, store.num_tokens)


def test_document_sampler_scores_whole_documents(tmp_path, store):
    model = TinyCausal()
    stats = score(model, store, "doc:8/4", "document", 6, seed=5, out_dir=tmp_path / "d", batch_size=3,
                  shard_size=4, progress=False)
    offsets = np.append(store.doc_offsets, store.num_tokens)
    docs = store.document_of(stats.positions)
    for d in range(6):
        sel = stats.draw == d
        j = docs[sel][0]
        assert (docs[sel] == j).all()
        assert stats.positions[sel].tolist() == list(range(offsets[j], offsets[j + 1]))
    # within a document, windows are laid over the document alone: compare with a store of just that document
    j = int(docs[0])
    doc = store.document(j)
    ref = direct_stats_doc_windows(model, doc, ContextRule.parse("doc:8/4"))
    np.testing.assert_allclose(stats.prob[stats.draw == 0], ref, rtol=1e-5)
    assert stats.meta["population_documents"] == store.num_documents
    with pytest.raises(TokenboundError, match="^sampler document"):
        score(model, store, "stream:8", "document", 3, seed=0, out_dir=tmp_path / "x", progress=False)


@torch.no_grad()
def direct_stats_doc_windows(model, doc, rule):
    offsets = np.array([0])
    starts, _ = rule.contexts(np.arange(len(doc)), offsets)
    probs = []
    for i, s in enumerate(starts):
        row = torch.from_numpy(extended_slice(doc, EOT, int(s), i))[None]
        p = torch.softmax(model.log_probs(row, segments_from_ids(row, EOT))[0, -1].double(), -1)
        probs.append(float(p[int(doc[i])]))
    return np.array(probs)


def test_input_checks(tmp_path, store):
    out = tmp_path / "o"
    with pytest.raises(TokenboundError, match="vocabulary"):
        score(BigramModel(vocab_size=V + 1), store, "doc:8", "token", 3, 0, out_dir=out, progress=False)
    with pytest.raises(TokenboundError, match="exceeds the model's maximum context 16"):
        score(TinyCausal(), store, "doc:32", "token", 3, 0, out_dir=out, progress=False)
    with pytest.raises(TokenboundError, match="^n: the number of draws") as e:  # its parameter; the CLI's --samples
        score(BigramModel(), store, "doc:8", "token", 0, 0, out_dir=out, progress=False)
    assert e.value.cli_message({"n": "--samples"}).startswith("--samples: ")
    with pytest.raises(TokenboundError, match="^sampler"):
        score(BigramModel(), store, "doc:8", "tokens", 3, 0, out_dir=out, progress=False)
    with pytest.raises(TokenboundError, match="^context"):
        score(BigramModel(), store, "doc8", "token", 3, 0, out_dir=out, progress=False)
    with pytest.raises(TokenboundError, match="non-finite log-probabilities when predicting stream position") as e:
        score(NaNModel(), store, "stream:4/4", "block", 200, 0, out_dir=tmp_path / "nan", progress=False)
    bad_pos = int(str(e.value).split()[-1])
    assert store.tokens[bad_pos - 1] == 3  # the NaN row is the one after token 3
    assert not (tmp_path / "nan" / "tokenstats.npz").exists()


def test_reproducible_and_refuses_to_mix(tmp_path, store):
    a = score(BigramModel(), store, "doc:8/4", "block", 10, 7, out_dir=tmp_path / "a", progress=False)
    b = score(BigramModel(), store, "doc:8/4", "block", 10, 7, out_dir=tmp_path / "b", progress=False)
    assert_identical(a, b)
    c = score(BigramModel(), store, "doc:8/4", "block", 10, 8, out_dir=tmp_path / "c", progress=False)
    assert not np.array_equal(a.positions, c.positions)
    with pytest.raises(TokenboundError, match="another scoring run.*seed"):
        score(BigramModel(), store, "doc:8/4", "block", 10, 8, out_dir=tmp_path / "a", progress=False)
    with pytest.raises(TokenboundError, match="another scoring run.*model"):
        score(BigramModel(seed=1), store, "doc:8/4", "block", 10, 7, out_dir=tmp_path / "a", progress=False)
    assert model_id(TinyCausal(seed=0)) != model_id(TinyCausal(seed=1))
    # a rerun over a finished directory recomputes nothing
    counting = Counting(BigramModel())
    again = score(counting, store, "doc:8/4", "block", 10, 7, out_dir=tmp_path / "a", progress=False,
                  model_sha256=a.meta["model_sha256"])
    assert counting.calls == 0
    assert_identical(a, again)


def test_position_stats_breaks_ties_by_lower_id():
    """rank = place in (probability desc, id asc) order: a tie with the true token counts against it when the
    tied token has a lower id (docs/theory.md §8), and every tie, however many, is resolved the same way."""
    ln = torch.log(torch.tensor([0.1, 0.3, 0.3, 0.05, 0.3, 0.05, 0.0, 0.0]))
    uniform = torch.zeros(8)  # unnormalised: all logits exactly tied
    lp = torch.stack([ln, uniform])[None]  # [1, 2, 8]
    cases = [(0, 1, 1), (0, 2, 2), (0, 4, 3), (0, 0, 4), (0, 3, 5), (0, 5, 6), (0, 6, 7), (0, 7, 8),
             (1, 0, 1), (1, 5, 6), (1, 7, 8)]
    cols = torch.tensor([c for c, _, _ in cases])
    targets = torch.tensor([t for _, t, _ in cases])
    prob, rank, _ = position_stats(lp, torch.zeros_like(cols), cols, targets, np.arange(len(cases)))
    assert rank.tolist() == [r for _, _, r in cases]
    np.testing.assert_allclose(prob[-3:], 1 / 8)
    # top-1 correct for exactly one of the tied tokens: a uniform model is not credited with every token
    assert (rank[-3:] == 1).sum() == 1


def assert_identical(a, b):
    for f in ("positions", "prob", "rank", "entropy_bits", "draw"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.meta == b.meta


RESUME_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    torch.set_num_threads({threads})
    import test_score as T
    from tokenbound.data.store import TokenStore
    from tokenbound.evaluate.score import score
    score(T.Counting(T.TinyCausal(), delay=0.2), TokenStore.open({store!r}), "doc:8/4", "block", 24, 3,
          out_dir={out!r}, batch_size=2, shard_size=4, progress=False, model_sha256="tiny")
""")


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path, store):
    out = tmp_path / "killed"
    script = RESUME_SCRIPT.format(here=str(HERE), threads=torch.get_num_threads(), store=str(store.path),
                                  out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-00001.npz").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "subprocess wrote no shard"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in out.glob("shard-*.npz"))
    assert 2 <= len(done) < 6, done  # killed midway
    before = {p: (out / p).read_bytes() for p in done}
    counting = Counting(TinyCausal())
    resumed = score(counting, store, "doc:8/4", "block", 24, 3, out_dir=out, batch_size=2, shard_size=4,
                    progress=False, model_sha256="tiny")
    assert all((out / p).read_bytes() == b for p, b in before.items())  # finished shards were kept
    assert not list(out.glob(".*.tmp"))  # no temporary file of the killed writer is left
    full_calls = Counting(TinyCausal())
    fresh = score(full_calls, store, "doc:8/4", "block", 24, 3, out_dir=tmp_path / "fresh", batch_size=2,
                  shard_size=4, progress=False, model_sha256="tiny")
    assert counting.calls < full_calls.calls
    assert_identical(resumed, fresh)
    assert_identical(TokenStats.load(out / "tokenstats.npz"), fresh)


DIST_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    torch.set_num_threads({threads})
    import test_score as T
    from tokenbound.data.store import TokenStore
    from tokenbound.evaluate.score import score
    score(T.TinyCausal(), TokenStore.open({store!r}), "doc:8/4", "block", 20, 4,
          out_dir={out!r}, batch_size=3, shard_size=3, progress=False)
""")


@pytest.mark.slow
def test_distributed_two_ranks_equal_one_process(tmp_path, store):
    out = tmp_path / "dist"
    script_file = tmp_path / "dist_score.py"
    script_file.write_text(DIST_SCRIPT.format(here=str(HERE), threads=torch.get_num_threads(),
                                              store=str(store.path), out=str(out)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script_file)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    single = score(TinyCausal(), store, "doc:8/4", "block", 20, 4, out_dir=tmp_path / "single", batch_size=3,
                   shard_size=3, progress=False)
    assert_identical(TokenStats.load(out / "tokenstats.npz"), single)


@pytest.mark.parametrize("rule", ["doc:2", "doc:6/3"])
def test_markov_model_agrees_with_its_own_vectorised_scoring(tmp_path, store, rule):
    """Cross-check with an independent implementation of the doc rule (tokenbound.models.markov)."""
    markov = pytest.importorskip("tokenbound.models.markov")
    tokens = np.asarray(store.tokens)
    model = markov.MarkovModel.fit(tokens, store.doc_offsets, V, EOT, order=2)
    stats = score(model, store, rule, "block" if "/" in rule else "token", 30, seed=6, out_dir=tmp_path / "m",
                  batch_size=4, progress=False)
    prob, rank, ent = model.score_positions(tokens, store.doc_offsets, stats.positions)
    np.testing.assert_allclose(stats.prob, prob, rtol=1e-9)
    assert (stats.rank == rank).all()
    np.testing.assert_allclose(stats.entropy_bits, ent, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_project_gpt_block_equals_token(tmp_path, store, positions):
    """The project's GPT (document-aware attention) gives the same numbers in windows as per position."""
    gpt = pytest.importorskip("tokenbound.models.gpt")
    cfg = gpt.GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16, positions=positions, eot=EOT)
    model = gpt.GPTLanguageModel(gpt.build_model(cfg), cfg)
    r = ContextRule.parse("doc:12/4")
    stats = score(model, store, r, "block", 12, seed=3, out_dir=tmp_path / "g", batch_size=4, progress=False)
    ref = direct_stats(model, np.asarray(store.tokens), r, stats.positions)
    np.testing.assert_allclose(stats.prob, ref[:, 0], rtol=1e-5)
    np.testing.assert_allclose(stats.entropy_bits, ref[:, 2], rtol=1e-5)
