"""Dynamic sparse training: exact counts, zeros that stay zero, every method combination, SNT-ASGD."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, SYNTHETIC_VOCAB, synthetic_corpus
from precision import EPS64, accumulated, two_ways

from lsh import config, sparse, training
from lsh.config import Params
from lsh.models import ModelConfig, build_model
from lsh.training import candidate_spec

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
VOCAB = SYNTHETIC_VOCAB


def small_params(model_type: str = "lstm", **sparse_cfg: object) -> Params:
    model = (
        ["model.type=lstm", "model.layers=2", "model.emb=8", "model.hidden=8"]
        if model_type == "lstm"
        else ["model.type=rhn", "model.layers=1", "model.depth=2", "model.emb=8", "model.hidden=8", "model.tied=true"]
    )
    overrides = [*model, "train.lr=2", "train.batch_size=4", "train.bptt=10", "train.eval_batch_size=4",
                 "train.eval_tokens=null", "final.epochs=4", "sparse.decay_epochs=null",
                 *(f"sparse.{k}={json.dumps(v)}" for k, v in sparse_cfg.items())]
    return Params.from_dict(config.load_params(SMOKE, overrides))


def make_trainer(params: Params, corpus) -> training.Trainer:
    return training.build_trainer(candidate_spec(params, {}), corpus, torch.device("cpu"))


def assert_pruned_weights_are_zero(t: training.Trainer) -> None:
    for name, mask in t.sparse.masks.items():
        w = dict(t.model.named_parameters())[name]
        assert torch.all(w[~mask] == 0), f"{name}: a pruned weight is not zero"
        if t.averager.active:
            assert torch.all(t.averager.avg[name][~mask] == 0), f"{name}: a pruned averaged weight is not zero"


# Every value of every mode appears in the fast tier's four combinations; all 144 are the slow tier's.
FAST = {(list(sparse.INIT)[i % 3], list(sparse.DEATH)[i], list(sparse.GROWTH)[i % 3], list(sparse.REDISTRIBUTION)[i])
        for i in range(4)}
COMBINATIONS = [
    pytest.param(*c, id="-".join(c), marks=() if c in FAST else pytest.mark.slow)
    for c in itertools.product(sparse.INIT, sparse.DEATH, sparse.GROWTH, sparse.REDISTRIBUTION)
]


@pytest.mark.parametrize("model_type", ["lstm", "rhn"])
@pytest.mark.parametrize("init, death, growth, redistribution", COMBINATIONS)
def test_every_combination_keeps_exact_counts_and_zeros(model_type, init, death, growth, redistribution):
    params = small_params(model_type, init=init, death=death, growth=growth, redistribution=redistribution,
                          density=0.33, death_rate=0.6)
    t = make_trainer(params, synthetic_corpus(tokens=600))  # 15 batches an epoch: each epoch prunes and regrows
    hook = t.sparse
    shapes = {n: w.shape for n, w in hook.weights.items()}
    expected = sparse.init.er_counts(shapes, 0.33) if init == "ER" else sparse.init.uniform_counts(shapes, 0.33)
    counts = {n: int(m.sum()) for n, m in hook.masks.items()}
    if init == "jacobian":  # one global top-K over the cell's matrices: only their total is fixed
        cell = [n for n in counts if n in t.model.recurrent_weights()]
        assert sum(counts[n] for n in cell) == sum(expected[n] for n in cell)
        counts.update({n: expected[n] for n in cell})
    assert counts == expected, "initial per-layer counts are exact"
    assert hook.nonzeros() == hook.target == sum(expected.values())
    assert_pruned_weights_are_zero(t)
    for epoch in range(2):  # the first plain, the second averaged: its topology update must zero both copies
        if epoch == 1:
            t.averager.start(t.model)  # SNT-ASGD from the second epoch on
        record = t.run_epoch(progress=False)
        assert record["status"] == "ok"
        assert record["pruned"] > 0 and record["regrown"] == record["pruned"]
        assert hook.nonzeros() == hook.target, f"epoch {epoch + 1}: non-zeros drifted from the target"
        assert_pruned_weights_are_zero(t)


@pytest.mark.parametrize("model_type", ["lstm", "rhn"])
def test_masks_cover_every_weight_matrix_and_a_tied_decoder_shares_the_embedding(model_type):
    t = make_trainer(small_params(model_type), synthetic_corpus())
    names = set(t.sparse.masks)
    assert all(not n.endswith("bias") and "bias_" not in n for n in names)
    if model_type == "lstm":
        assert names == {"embedding.weight", "decoder.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                         "lstm.weight_ih_l1", "lstm.weight_hh_l1"}
    else:
        assert names == {"embedding.weight", "W.weight", "R.0.weight", "R.1.weight"}
        assert t.model.decoder.weight is t.model.embedding.weight


def test_er_counts_follow_rows_plus_cols_and_spill_a_full_layer():
    shapes = {"a": torch.Size([100, 100]), "b": torch.Size([10, 1000]), "c": torch.Size([2, 2])}
    counts = sparse.init.er_counts(shapes, 0.1)
    assert counts["c"] == 4, "a layer whose ER density exceeds 1 is kept dense"
    target = 0.1 * (10_000 + 10_000 + 4)
    assert abs(sum(counts.values()) - target) <= 2
    # the free layers keep eps * (rows + cols) entries with one eps, each count rounded to an integer (by at most
    # 0.5), and two float64 divisions
    tol = 0.5 / 200 + 0.5 / 1010 + accumulated(EPS64, 2, 2.0)
    assert counts["a"] / 200 == pytest.approx(counts["b"] / 1010, abs=tol)


def test_threshold_death_removes_the_intended_count_within_two_percent():
    torch.manual_seed(0)
    weights = {"w": torch.randn(300, 300)}
    masks = {"w": torch.rand(300, 300) < 0.4}
    for rate in (0.1, 0.5, 0.8):
        removed = sparse.topology.death_threshold(weights, masks, rate)["w"]
        intended = math.ceil(rate * int(masks["w"].sum()))
        assert abs(int(removed.sum()) - intended) <= 0.02 * intended
        assert not torch.any(removed & ~masks["w"]), "only active weights are removed"
        kept = weights["w"].abs()[masks["w"] & ~removed]
        assert weights["w"].abs()[removed].max() <= kept.min(), "the smallest magnitudes go"


def test_magnitude_and_set_and_global_remove_exactly_and_by_their_rule():
    torch.manual_seed(1)
    weights = {"a": torch.randn(50, 40), "b": 3 * torch.randn(30, 30)}
    masks = {n: torch.rand(w.shape) < 0.5 for n, w in weights.items()}
    rate = 0.3
    mag = sparse.topology.death_magnitude(weights, masks, rate)
    for n in weights:
        assert int(mag[n].sum()) == math.ceil(rate * int(masks[n].sum()))
        assert weights[n].abs()[mag[n]].max() <= weights[n].abs()[masks[n] & ~mag[n]].min()
    set_ = sparse.topology.death_set(weights, masks, rate)
    for n, w in weights.items():
        k = math.ceil(rate * int(masks[n].sum()))
        assert int(set_[n].sum()) == k
        pos, neg = set_[n] & (w >= 0), set_[n] & (w < 0)
        assert abs(int(pos.sum()) - int(neg.sum())) <= 1, "half positive, half negative"
        assert w[pos].max() <= w[masks[n] & (w >= 0) & ~set_[n]].min(), "the smallest positive weights"
        assert w[neg].min() >= w[masks[n] & (w < 0) & ~set_[n]].max(), "the negative weights closest to zero"
    glob = sparse.topology.death_global_magnitude(weights, masks, rate)
    total = sum(int(m.sum()) for m in masks.values())
    assert sum(int(r.sum()) for r in glob.values()) == math.ceil(rate * total)
    removed = torch.cat([weights[n].abs()[glob[n]] for n in weights])
    kept = torch.cat([weights[n].abs()[masks[n] & ~glob[n]] for n in weights])
    assert removed.max() <= kept.min(), "one threshold across layers"
    assert int(glob["a"].sum()) > int(glob["b"].sum()), "the layer of smaller weights loses more"


def test_redistribution_shares_exactly_and_caps_a_layer_at_99_percent():
    masks = {"a": torch.zeros(10, 10, dtype=torch.bool), "b": torch.zeros(10, 10, dtype=torch.bool)}
    masks["a"].view(-1)[:95] = True
    masks["b"].view(-1)[:20] = True
    weights = {"a": torch.full((10, 10), 5.0), "b": torch.full((10, 10), 1.0)}
    shares = sparse.topology.redistribution_shares("magnitude", weights, masks, None)
    counts = sparse.topology.regrowth_counts({"a": 10, "b": 10}, shares, masks)
    assert sum(counts.values()) == 20
    assert counts["a"] == 4, "a: 95 of 100 + 4 = 99 %, the rest spills to b"
    counts = sparse.topology.regrowth_counts(
        {"a": 3, "b": 4}, sparse.topology.redistribution_shares("nonzeros", weights, masks, None), masks)
    assert sum(counts.values()) == 7 and counts["a"] == 4 and counts["b"] == 3
    assert sparse.topology.redistribution_shares("none", weights, masks, None) is None
    assert sparse.topology.regrowth_counts({"a": 2, "b": 5}, None, masks) == {"a": 2, "b": 5}


@pytest.mark.parametrize("mode", ["magnitude", "nonzeros"])
def test_redistribution_shares_are_measured_before_pruning(mode):
    """Selfish-RNN gathers the shares before it prunes. With global_magnitude death the layer of small
    weights loses most of its weights: after pruning, `nonzeros` would give it a small share and
    `magnitude` a share of its few large survivors; before pruning both see the layer as it was."""
    torch.manual_seed(0)
    params = small_params(death="global_magnitude", growth="random", redistribution=mode, density=0.5, death_rate=0.5)
    t = make_trainer(params, synthetic_corpus())
    hook = t.sparse
    with torch.no_grad():
        hook.weights["lstm.weight_hh_l0"].mul_(1e-3)  # this layer's weights are the smallest by far
    hook.apply()
    before = {n: m.clone() for n, m in hook.masks.items()}
    weights = {n: w.detach().clone() for n, w in hook.weights.items()}
    expected_shares = sparse.topology.redistribution_shares(mode, weights, before, None)
    removed = sparse.topology.death_global_magnitude(weights, before, hook.death_rate)
    after_prune = {n: before[n] & ~removed[n] for n in before}
    expected = sparse.topology.regrowth_counts({n: int(r.sum()) for n, r in removed.items()}, expected_shares,
                                               after_prune)
    hook.end_of_epoch(t.model, t.optimizer, t.averager)
    regrown = {n: int((hook.masks[n] & ~after_prune[n]).sum()) for n in hook.masks}
    assert regrown == expected
    late = sparse.topology.redistribution_shares(mode, weights, after_prune, None)  # what the old order measured
    assert sparse.topology.regrowth_counts({n: int(r.sum()) for n, r in removed.items()}, late, after_prune) != expected


def test_growth_picks_inactive_positions_by_its_rule():
    inactive = torch.tensor([True, True, False, True, True])
    grad = torch.tensor([0.1, -5.0, 100.0, 2.0, 0.0])
    assert sparse.topology.grow("gradient", inactive, 2, grad, None).tolist() == [False, True, False, True, False]
    assert sparse.topology.grow("momentum", inactive, 1, None, grad).tolist() == [False, True, False, False, False]
    grown = sparse.topology.grow("random", inactive, 3, None, None)
    assert int(grown.sum()) == 3 and not grown[2]


def test_death_rate_decays_by_cosine_over_the_full_training_per_batch():
    params = small_params(death_rate=0.8)
    t = make_trainer(params, synthetic_corpus())
    hook = t.sparse
    per_epoch = t.batches_per_epoch
    assert hook.total_steps == per_epoch * params.final_epochs, "decay length is the full training (null: final.epochs)"
    explicit = make_trainer(dataclasses.replace(params, sparse=dataclasses.replace(params.sparse, decay_epochs=7)),
                            synthetic_corpus())
    assert explicit.sparse.total_steps == per_epoch * 7
    tol = accumulated(EPS64, 6, 1.0)  # float64: a cosine and 5 operations on values below 1, against decimals
    assert hook.death_rate == pytest.approx(0.8, abs=tol)
    assert hook.total_steps % 2 == 0  # so that the half-way step is the cosine's zero
    hook.step = hook.total_steps // 2
    assert hook.death_rate == pytest.approx(0.005 + 0.5 * 0.795, abs=tol)
    hook.step = hook.total_steps
    assert hook.death_rate == pytest.approx(0.005, abs=tol)
    hook.step = 0
    t.run_epoch(progress=False)
    assert hook.step == per_epoch, "stepped once per mini-batch"


def test_a_regrown_weight_restarts_its_average():
    params = small_params(growth="random", death="magnitude", redistribution="none", death_rate=0.5)
    t = make_trainer(params, synthetic_corpus())
    t.run_epoch(progress=False)
    t.averager.start(t.model)
    for _ in range(5):
        t.averager.update(t.model)
    before = {n: m.clone() for n, m in t.sparse.masks.items()}
    t.sparse.end_of_epoch(t.model, t.optimizer, t.averager)
    name = "lstm.weight_hh_l0"
    w = dict(t.model.named_parameters())[name].detach()
    # regrown weights start at zero (a weight pruned and regrown in one update is regrown too)
    grown, kept = t.sparse.masks[name] & (w == 0), t.sparse.masks[name] & (w != 0)
    assert (grown & ~before[name]).any() and kept.any()
    steps = t.averager.steps[name]
    assert torch.all(steps[grown] == 0), "the counter of a regrown weight restarts"
    assert torch.all(steps[kept] == 5), "kept weights keep averaging"
    with torch.no_grad():
        w = dict(t.model.named_parameters())[name]
        w[grown] = 0.75
    t.averager.update(t.model)
    assert torch.all(t.averager.avg[name][grown] == 0.75), "its average starts over from its own value"


def test_same_seed_gives_same_masks_and_weights_and_resume_is_exact(ptb_quick_small: Path, tmp_path: Path):
    from lsh import data

    corpus = data.load_corpus(ptb_quick_small)
    params = candidate_spec(Params.from_dict(config.load_params(SMOKE, [
        "model.emb=16", "model.hidden=16", "train.eval_tokens=4000", "sparse.init=ER", "sparse.growth=gradient",
        "sparse.redistribution=magnitude"])), {})
    training.train(params, corpus, tmp_path / "a", 3)
    training.train(params, corpus, tmp_path / "b", 1)
    training.train(params, corpus, tmp_path / "b", 3, resume=True)
    other = dataclasses.replace(params, seed=params.seed + 1)
    training.train(other, corpus, tmp_path / "c", 1)
    a, b = (training.load_checkpoint(tmp_path / d / "epoch-003.pt") for d in "ab")
    for name in a["masks"]:
        assert torch.equal(a["masks"][name], b["masks"][name]), name
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    a0, c0 = (training.load_checkpoint(tmp_path / d / "epoch-000.pt") for d in "ac")
    assert not torch.equal(a0["masks"]["lstm.weight_hh_l0"], c0["masks"]["lstm.weight_hh_l0"]), \
        "masks come from the seed"
    assert a0["masks"]["lstm.weight_hh_l0"].dtype == torch.bool


def test_jacobian_init_keeps_the_top_k_of_a_direct_computation():
    torch.manual_seed(3)
    cfg = ModelConfig(type="lstm", vocab=12, emb=4, hidden=5, layers=2)
    model = build_model(cfg).double()
    tokens = torch.randint(12, (6, 3))
    approx = torch.randint(12, (6, 3))
    scores = sparse.init.jacobian_sensitivity(model, tokens, approx, horizon=2)

    # Direct: the full state Jacobian by jacrev, J 1 as its row sums, then autograd for theta.
    weights = model.sparsifiable_weights()
    names, params = list(weights), list(weights.values())
    with torch.no_grad():
        states = [model.init_state(3)]
        for t in range(5):
            states.append(model.step(states[-1], model.embed(tokens[t])))
    # chi_u is the batch mean of ||J 1||^2, and |d chi_u / d theta| is summed over u
    delta = {n: torch.zeros_like(p) for n, p in weights.items()}
    for u in (1, 2):
        h, c = states[6 - u]
        x = model.embed(tokens[6 - u])
        jac = torch.func.vmap(torch.func.jacrev(lambda hb, cb, xb: model.step((hb, cb), xb)[0]),
                              in_dims=(1, 1, 0))(h, c, x)
        j1 = jac.reshape(3, 10, 10).sum(dim=2)
        grads = torch.autograd.grad((j1**2).sum() / 3, params, allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                delta[n] += g.abs()
    state, total = model.init_state(3), 0.0
    for t in range(6):
        state = model.step(state, model.embed(approx[t]))
        total = total + state[0].sum()
    gamma = dict(zip(names, torch.autograd.grad(total / 3, params, allow_unused=True)))
    for n in names:
        g = gamma[n]
        direct = (torch.where(g.abs() > 0, delta[n] / g.abs().clamp(min=1e-30), torch.zeros_like(delta[n]))
                  if g is not None else torch.zeros_like(delta[n]))
        # gamma runs the same operations on both sides; delta's float64 gradients sum over 3 samples and 6 steps
        # the 4 gates' 4 + 5 + 5 terms in another order (jvp against jacrev): relative to each entry
        torch.testing.assert_close(scores[n], direct, rtol=two_ways(EPS64, 3 * 6 * 4 * 14), atol=0)



def test_jacobian_init_keeps_one_global_top_k_of_the_cells_weights_and_a_uniform_share_elsewhere(monkeypatch):
    """Seed paper 003: the K largest normalised sensitivities over all the weights the state Jacobian
    sees (one ranking across layers), on 64 training sequences over the last 4 steps; the embedding
    and the decoder, which it cannot score, keep their uniform share."""
    assert (sparse.init.JACOBIAN_BATCH, sparse.init.JACOBIAN_HORIZON) == (64, 4)
    seen_shapes = []
    real = sparse.init.jacobian_sensitivity

    def recording(model, tokens, approx, horizon):
        seen_shapes.append((tuple(tokens.shape), horizon))
        return real(model, tokens, approx, horizon)

    monkeypatch.setattr(sparse.init, "jacobian_sensitivity", recording)
    params = small_params(init="jacobian", density=0.3)
    torch.manual_seed(params.seed)
    corpus = synthetic_corpus()
    model = build_model(ModelConfig.from_params(params.model, corpus.vocab_size))
    masks = sparse.initial_masks(model, params.sparse.init, params.sparse.density, corpus)
    assert seen_shapes == [((sparse.init.JACOBIAN_STEPS, 64), 4)]
    torch.manual_seed(0)
    weights = model.sparsifiable_weights()
    counts = sparse.init.uniform_counts({n: w.shape for n, w in weights.items()}, 0.3)
    for n in ("embedding.weight", "decoder.weight"):
        assert int(masks[n].sum()) == counts[n], f"{n} keeps its uniform share"
    cell = [n for n in weights if n.startswith("lstm.")]
    assert sum(int(masks[n].sum()) for n in cell) == sum(counts[n] for n in cell)
    assert len({int(masks[n].sum()) for n in cell}) > 1, "one ranking across layers, not per-layer counts"
    # the kept weights are the global top-K of the sensitivities computed on the same inputs
    torch.manual_seed(params.seed)
    model2 = build_model(ModelConfig.from_params(params.model, corpus.vocab_size))
    starts = torch.randint(len(corpus.train) - sparse.init.JACOBIAN_STEPS, (64,))
    ids = torch.from_numpy(corpus.train)
    tokens = torch.stack([ids[o : o + sparse.init.JACOBIAN_STEPS] for o in starts.tolist()], dim=1)
    approx = torch.randint(corpus.vocab_size, tokens.shape)
    scores = real(model2, tokens, approx, 4)
    kept = torch.cat([scores[n][masks[n]] for n in cell])
    dropped = torch.cat([scores[n][~masks[n]] for n in cell])
    assert kept.min() >= dropped.max()


def test_divergent_sparse_settings_end_as_diverged(ptb_quick_small: Path, tmp_path: Path):
    from lsh import data

    params = candidate_spec(Params.from_dict(config.load_params(SMOKE, [
        "model.emb=16", "model.hidden=16", "train.eval_tokens=4000", "sparse.death_rate=0.9", "train.lr=1e12",
        "train.clip=1e9"])), {})
    summary = training.train(params, data.load_corpus(ptb_quick_small), tmp_path, 3)
    assert summary.status == "diverged"


def test_density_one_or_no_section_is_the_dense_model():
    corpus = synthetic_corpus()
    torch.manual_seed(0)
    model = build_model(ModelConfig(type="lstm", vocab=VOCAB, emb=4, hidden=4, layers=1))
    params = small_params(density=1.0)
    assert sparse.from_config(model, params.sparse, corpus) is None
    assert sparse.from_config(model, None, corpus) is None
