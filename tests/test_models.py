"""Behaviour of lsh.models: shapes, step == forward, torch.func, tying, dropout, config checks."""

import dataclasses
import math
import types

import pytest
import torch
import torch.nn.functional as F
from precision import EPS64, two_ways

from lsh.models import (
    LSTMLanguageModel,
    ModelConfig,
    RHNLanguageModel,
    build_model,
    variational_mask,
)

VOCAB = 50


def lstm_cfg(**kw) -> ModelConfig:
    base = dict(type="lstm", vocab=VOCAB, emb=6, hidden=8, layers=2)
    return ModelConfig(**{**base, **kw})


def rhn_cfg(**kw) -> ModelConfig:
    base = dict(type="rhn", vocab=VOCAB, emb=6, hidden=8, layers=1, depth=3)
    return ModelConfig(**{**base, **kw})


def make(cfg: ModelConfig, seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    return build_model(cfg).to(dtype)


def random_tokens(T: int, B: int, vocab: int = VOCAB, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab, (T, B), generator=torch.Generator().manual_seed(seed))


def random_state(model, B: int, seed: int = 2):
    """A nonzero state of the model's layout (so that the state path is exercised)."""
    g = torch.Generator().manual_seed(seed)
    zero = model.init_state(B)
    if isinstance(zero, torch.Tensor):
        return 0.5 * torch.randn(zero.shape, generator=g, dtype=zero.dtype)
    return tuple(0.5 * torch.randn(z.shape, generator=g, dtype=z.dtype) for z in zero)


def cell_terms(cfg: ModelConfig) -> int:
    """The rounded terms one step of a state entry gathers: per layer (RHN: micro-layer) the pre-activation's
    sum (emb + hidden terms; hidden + hidden above the first) and a few gate products (8 roundings)."""
    return (cfg.layers if cfg.type == "lstm" else cfg.depth) * (8 + max(cfg.emb, cfg.hidden) + cfg.hidden)


# -----------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
def test_lstm_forward_returns_logits_and_state_of_documented_shapes(layers, tied):
    cfg = lstm_cfg(layers=layers, tied=tied, emb=8 if tied else 6)
    model = make(cfg)
    assert isinstance(model, LSTMLanguageModel) and model.config is cfg
    h0, c0 = model.init_state(4)
    assert h0.shape == c0.shape == (layers, 4, 8) and h0.dtype == torch.float64
    logits, (h, c) = model(random_tokens(5, 4), None)
    assert logits.shape == (5, 4, VOCAB)
    assert h.shape == c.shape == (layers, 4, 8)
    assert model.embed(random_tokens(5, 4)).shape == (5, 4, cfg.emb)


@pytest.mark.parametrize("tied", [False, True])
def test_rhn_forward_returns_logits_and_state_of_documented_shapes(tied):
    cfg = rhn_cfg(tied=tied, emb=8 if tied else 6)
    model = make(cfg)
    assert isinstance(model, RHNLanguageModel) and model.config is cfg
    assert model.init_state(4).shape == (4, 8)
    logits, s = model(random_tokens(5, 4), None)
    assert logits.shape == (5, 4, VOCAB)
    assert s.shape == (4, 8)


@pytest.mark.parametrize("cfg", [lstm_cfg(), rhn_cfg()], ids=["lstm", "rhn"])
def test_none_state_is_the_zero_state(cfg):
    model = make(cfg).eval()
    tokens = random_tokens(4, 3)
    a, _ = model(tokens, None)
    b, _ = model(tokens, model.init_state(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # forward makes the same zero state: the same operations


@pytest.mark.parametrize("cfg", [lstm_cfg(), rhn_cfg()], ids=["lstm", "rhn"])
def test_detach_state_keeps_values_and_cuts_the_graph(cfg):
    model = make(cfg)
    _, state = model(random_tokens(3, 2), None)
    detached = model.detach_state(state)
    for old, new in zip(
        state if isinstance(state, tuple) else (state,),
        detached if isinstance(detached, tuple) else (detached,),
    ):
        assert old.requires_grad and not new.requires_grad
        torch.testing.assert_close(old, new, rtol=0, atol=0)  # the same values, not recomputed


# -----------------------------------------------------------------------------
# untrained perplexity


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(type="lstm", vocab=1000, emb=32, hidden=32, layers=2),
        ModelConfig(type="rhn", vocab=1000, emb=32, hidden=32, depth=3, tied=True),
    ],
    ids=["lstm", "rhn-tied"],
)
def test_untrained_perplexity_on_random_tokens_is_near_vocabulary_size(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    tokens = random_tokens(36, 8, vocab=cfg.vocab)
    with torch.no_grad():
        logits, _ = model(tokens[:-1], None)
    loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), tokens[1:].reshape(-1))
    ppl = math.exp(loss.item())
    assert cfg.vocab / 1.5 < ppl < cfg.vocab * 1.5


# -----------------------------------------------------------------------------
# step == forward (eval mode), float64


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_lstm_step_matches_forward_in_eval_mode(layers):
    # emb != hidden, and dropouts set: eval mode must ignore them in both paths
    cfg = lstm_cfg(layers=layers, emb=5, hidden=7, dropout_input=0.5, dropout_hidden=0.5,
                   dropout_output=0.5, dropout_words=0.3)
    model = make(cfg).eval()
    tokens, state = random_tokens(6, 3), random_state(model, 3)
    with torch.no_grad():
        logits, (h_fwd, c_fwd) = model(tokens, state)
        # float64, the fused cell and plain ops summing in other orders: 6 steps of `cell_terms` on values up
        # to 1 + |c| (|h| < 1, |c| grows by at most 1 a step; the decoder's weights sum below 1 a row)
        tol = two_ways(EPS64, 6 * cell_terms(cfg), 1 + c_fwd.abs().max().item())
        h, c = state
        for t in range(tokens.shape[0]):
            h, c = model.step((h, c), model.embed(tokens[t]))
            torch.testing.assert_close(model.decoder(h[-1]), logits[t], rtol=0, atol=tol)
    torch.testing.assert_close(h, h_fwd, rtol=0, atol=tol)
    torch.testing.assert_close(c, c_fwd, rtol=0, atol=tol)


@pytest.mark.parametrize("depth", [1, 3])
def test_rhn_step_matches_forward_in_eval_mode(depth):
    cfg = rhn_cfg(depth=depth, emb=5, hidden=7, dropout_input=0.5, dropout_hidden=0.5,
                  dropout_output=0.5, dropout_words=0.3)
    model = make(cfg).eval()
    tokens, s0 = random_tokens(6, 3), random_state(model, 3)
    with torch.no_grad():
        logits, s_fwd = model(tokens, s0)
        # float64, 6 steps of `cell_terms` in other orders on values up to max(1, |s0|) (s' mixes tanh and s)
        tol = two_ways(EPS64, 6 * cell_terms(cfg), max(1.0, s0.abs().max().item()))
        s = s0
        for t in range(tokens.shape[0]):
            s = model.step(s, model.embed(tokens[t]))
            torch.testing.assert_close(model.decoder(s), logits[t], rtol=0, atol=tol)
    torch.testing.assert_close(s, s_fwd, rtol=0, atol=tol)


def test_rhn_step_follows_the_coupled_highway_equations():
    """One depth-2 step recomputed from the documented equations and the named weights."""
    model = make(rhn_cfg(depth=2, emb=5, hidden=7)).eval()
    w = model.recurrent_weights()
    x, s = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    expected = s
    for l in range(2):
        a = expected @ w[f"R.{l}.weight"].T + w[f"R.{l}.bias"]
        if l == 0:
            a = a + x @ w["W.weight"].T
        h, t = torch.tanh(a[:, :7]), torch.sigmoid(a[:, 7:])
        expected = h * t + expected * (1 - t)
    # float64, one step of `cell_terms` in other orders, on values up to max(1, |s|)
    tol = two_ways(EPS64, cell_terms(model.config), max(1.0, s.abs().max().item()))
    with torch.no_grad():
        torch.testing.assert_close(model.step(s, x), expected, rtol=0, atol=tol)


# -----------------------------------------------------------------------------
# torch.func


def test_lstm_step_works_under_vmap_jacrev():
    model = make(lstm_cfg(layers=2, emb=5, hidden=7)).eval()
    B = 3
    (h, c), x = random_state(model, B), model.embed(random_tokens(1, B)[0]).detach()

    def h_next(h, c, x):  # per sample: h, c [layers, hidden], x [emb]; c held fixed
        return model.step((h, c), x)[0]

    jac = torch.func.vmap(torch.func.jacrev(h_next), in_dims=(1, 1, 0))(h, c, x)
    assert jac.shape == (B, 2, 7, 2, 7)
    # the upper layer does not feed the lower one: block lower-triangular
    assert torch.count_nonzero(jac[:, 0, :, 1, :]) == 0
    # agrees with the unbatched Jacobian of sample 0
    jac0 = torch.func.jacrev(h_next)(h[:, 0], c[:, 0], x[0])
    # float64, batched kernels against unbatched ones: one step's `cell_terms` on entries of this size
    tol = two_ways(EPS64, cell_terms(model.config), jac0.abs().max().item())
    torch.testing.assert_close(jac[0], jac0, rtol=0, atol=tol)


def test_rhn_step_works_under_vmap_jacrev():
    model = make(rhn_cfg(depth=3, emb=5, hidden=7)).eval()
    B = 3
    s, x = random_state(model, B), model.embed(random_tokens(1, B)[0]).detach()
    jac = torch.func.vmap(torch.func.jacrev(model.step))(s, x)
    assert jac.shape == (B, 7, 7)
    # agrees with finite differences on sample 0
    eps, j_fd = 1e-6, torch.empty(7, 7, dtype=torch.float64)
    with torch.no_grad():
        for i in range(7):
            d = torch.zeros(7, dtype=torch.float64)
            d[i] = eps
            j_fd[:, i] = (model.step(s[0] + d, x[0]) - model.step(s[0] - d, x[0])) / (2 * eps)
    # central differences: the two steps' rounding (`cell_terms` on values up to max(1, |s|)) over 2 eps, and
    # the truncation eps^2 |f'''| / 6 (tanh and sigmoid of maps of norm about 1: |f'''| < 6; 0.02 measured)
    tol = two_ways(EPS64, cell_terms(model.config), max(1.0, s[0].abs().max().item())) / (2 * eps) + eps**2
    torch.testing.assert_close(jac[0], j_fd, rtol=0, atol=tol)


# -----------------------------------------------------------------------------
# tying and name-keyed accessors


@pytest.mark.parametrize("cfg", [lstm_cfg(emb=8, tied=True), rhn_cfg(emb=8, tied=True)], ids=["lstm", "rhn"])
def test_tying_shares_one_tensor_between_embedding_and_decoder(cfg):
    model = make(cfg)
    assert model.decoder.weight is model.embedding.weight
    names = [n for n, _ in model.named_parameters()]
    assert "embedding.weight" in names and "decoder.weight" not in names


def test_lstm_sparsifiable_weights_are_the_matrices_without_biases():
    untied = make(lstm_cfg(layers=2))
    assert set(untied.sparsifiable_weights()) == {
        "embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
        "lstm.weight_ih_l1", "lstm.weight_hh_l1", "decoder.weight",
    }
    tied = make(lstm_cfg(layers=2, emb=8, tied=True))
    assert set(tied.sparsifiable_weights()) == {
        "embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
        "lstm.weight_ih_l1", "lstm.weight_hh_l1",
    }
    params = dict(untied.named_parameters())
    for name, p in untied.sparsifiable_weights().items():
        assert p is params[name] and isinstance(p, torch.nn.Parameter)


def test_rhn_sparsifiable_weights_are_the_matrices_without_biases():
    untied = make(rhn_cfg(depth=2))
    assert set(untied.sparsifiable_weights()) == {
        "embedding.weight", "W.weight", "R.0.weight", "R.1.weight", "decoder.weight",
    }
    tied = make(rhn_cfg(depth=2, emb=8, tied=True))
    assert set(tied.sparsifiable_weights()) == {"embedding.weight", "W.weight", "R.0.weight", "R.1.weight"}


def test_recurrent_weights_are_named_parameters_with_documented_layout():
    lstm = make(lstm_cfg(layers=2, emb=5, hidden=7))
    params = dict(lstm.named_parameters())
    rw = lstm.recurrent_weights()
    assert set(rw) == {f"lstm.{kind}_l{k}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                       for k in range(2)}
    assert all(rw[n] is params[n] for n in rw)
    assert rw["lstm.weight_ih_l0"].shape == (28, 5) and rw["lstm.weight_ih_l1"].shape == (28, 7)
    assert rw["lstm.weight_hh_l1"].shape == (28, 7)

    rhn = make(rhn_cfg(depth=2, emb=5, hidden=7))
    params = dict(rhn.named_parameters())
    rw = rhn.recurrent_weights()
    assert set(rw) == {"W.weight", "R.0.weight", "R.0.bias", "R.1.weight", "R.1.bias"}
    assert all(rw[n] is params[n] for n in rw)
    assert rw["W.weight"].shape == (14, 5) and rw["R.1.weight"].shape == (14, 7)


def test_rhn_transform_gate_bias_starts_negative_and_h_bias_zero():
    model = make(rhn_cfg(depth=2, hidden=7))
    for l in range(2):
        bias = model.R[l].bias
        assert torch.all(bias[:7] == 0) and torch.all(bias[7:] == -2.0)


def test_lstm_and_decoder_init_follow_word_language_model():
    model = make(lstm_cfg(layers=1, emb=8, hidden=8))
    for w in (model.embedding.weight, model.decoder.weight):
        assert w.abs().max() <= 0.1
    assert torch.all(model.decoder.bias == 0)


# -----------------------------------------------------------------------------
# dropout


def capture_inputs(module, store: list):
    """Record the first positional input of every call of `module`."""
    return module.register_forward_pre_hook(lambda m, args: store.append(args[0].detach().clone()))


def test_rhn_dropout_masks_are_shared_over_the_time_steps_of_a_window():
    p = 0.5
    cfg = rhn_cfg(depth=3, emb=40, hidden=40, dropout_input=p, dropout_hidden=p, dropout_output=p)
    model = make(cfg).train()
    T, B = 7, 5
    seen_x, seen_s, seen_y = [], [], []
    hooks = [capture_inputs(model.W, seen_x), capture_inputs(model.decoder, seen_y)]
    hooks += [capture_inputs(R, seen_s) for R in model.R]
    model(random_tokens(T, B), random_state(model, B))
    for hook in hooks:
        hook.remove()

    # input x [T, B, emb]: the dropped (exactly zero) entries are the same at every step
    (x,) = seen_x
    dropped_x = x == 0
    assert torch.equal(dropped_x, dropped_x[:1].expand_as(dropped_x))
    # the state entering every R_l at every step and micro-layer carries one mask [B, hidden]
    assert len(seen_s) == T * cfg.depth
    dropped_s = torch.stack(seen_s) == 0
    assert torch.equal(dropped_s, dropped_s[:1].expand_as(dropped_s))
    # output [T, B, hidden] before the decoder
    (y,) = seen_y
    dropped_y = y == 0
    assert torch.equal(dropped_y, dropped_y[:1].expand_as(dropped_y))
    # and the masks really drop about a fraction p (200 or more draws each)
    for dropped in (dropped_x[0], dropped_s[0], dropped_y[0]):
        assert 0.3 < dropped.double().mean().item() < 0.7
    # the next window draws a fresh mask
    seen_s.clear()
    hooks = [capture_inputs(R, seen_s) for R in model.R]
    model(random_tokens(T, B), random_state(model, B))
    for hook in hooks:
        hook.remove()
    assert not torch.equal(torch.stack(seen_s)[0] == 0, dropped_s[0])


def test_word_dropout_drops_whole_word_types_in_the_window():
    cfg = rhn_cfg(vocab=4, emb=6, hidden=8, dropout_words=0.5)
    model = make(cfg).train()
    tokens = random_tokens(30, 4, vocab=4)  # every word type occurs many times
    seen = []
    hook = capture_inputs(model.W, seen)
    for _ in range(10):  # ten windows, ten independent draws
        model(tokens, None)
    hook.remove()
    n_dropped = 0
    for x in seen:
        dropped = (x == 0).all(dim=-1)  # [T, B]: whole embedding vector zeroed
        for word in range(4):
            at = dropped[tokens == word]
            assert at.all() or not at.any()  # all occurrences share one draw
            n_dropped += int(at.all())
    assert 5 < n_dropped < 35  # about half of the 40 (window, word) draws


def test_variational_mask_is_scaled_keep_mask_or_none():
    like = torch.zeros(1, dtype=torch.float64)
    assert variational_mask(0.0, (3, 4), like) is None
    torch.manual_seed(0)
    m = variational_mask(0.25, (200, 50), like)
    assert m.shape == (200, 50) and m.dtype == torch.float64
    assert set(m.unique().tolist()) <= {0.0, 1 / 0.75}
    assert abs((m == 0).double().mean().item() - 0.25) < 0.02


@pytest.mark.parametrize(
    "cfg",
    [lstm_cfg(layers=2, dropout_input=0.5, dropout_hidden=0.5, dropout_output=0.5, dropout_words=0.3),
     rhn_cfg(dropout_input=0.5, dropout_hidden=0.5, dropout_output=0.5, dropout_words=0.3)],
    ids=["lstm", "rhn"],
)
def test_eval_mode_is_deterministic_and_ignores_dropout(cfg):
    model = make(cfg)
    plain = make(dataclasses.replace(cfg, dropout_input=0.0, dropout_hidden=0.0,
                                     dropout_output=0.0, dropout_words=0.0))
    plain.load_state_dict(model.state_dict())
    tokens = random_tokens(6, 3)
    model.train()
    with torch.no_grad():
        a, _ = model(tokens, None)
        b, _ = model(tokens, None)
    assert not torch.equal(a, b)  # training mode draws fresh masks
    model.eval()
    plain.eval()
    with torch.no_grad():
        a, _ = model(tokens, None)
        b, _ = model(tokens, None)
        c, _ = plain(tokens, None)
    # eval mode: the very same operations on the same weights (no dropout drawn or applied), exactly
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


# -----------------------------------------------------------------------------
# configuration


BASE = dict(type="lstm", vocab=10, emb=4, hidden=4, layers=2, depth=1, tied=False,
            dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0, dropout_words=0.0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("type", "gru"),
        ("vocab", 0),
        ("vocab", True),
        ("emb", -3),
        ("hidden", 2.5),
        ("layers", 0),
        ("depth", 0),
        ("tied", "yes"),
        ("dropout_input", 1.0),
        ("dropout_hidden", -0.1),
        ("dropout_output", float("nan")),
        ("dropout_words", "0.2"),
    ],
)
def test_bad_config_value_raises_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field) as err:
        ModelConfig(**{**BASE, field: value})
    assert repr(value) in str(err.value) or str(value) in str(err.value)


def test_tied_with_different_emb_and_hidden_names_both():
    with pytest.raises(ValueError, match="tied") as err:
        ModelConfig(**{**BASE, "emb": 4, "hidden": 6, "tied": True})
    assert "emb" in str(err.value) and "hidden" in str(err.value)


def test_rhn_with_more_than_one_layer_is_rejected():
    with pytest.raises(ValueError, match="layers"):
        ModelConfig(**{**BASE, "type": "rhn", "layers": 2})


def test_build_model_rejects_unknown_type_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="lstm.*rhn"):
        build_model(types.SimpleNamespace(type="gru"))


def test_model_class_rejects_a_config_of_the_other_type():
    with pytest.raises(ValueError, match="type"):
        LSTMLanguageModel(rhn_cfg())


# -----------------------------------------------------------------------------
# reproducibility


@pytest.mark.parametrize("cfg", [lstm_cfg(), rhn_cfg(emb=8, tied=True)], ids=["lstm", "rhn"])
def test_seeded_construction_is_reproducible(cfg):
    a, b, other = make(cfg, seed=7), make(cfg, seed=7), make(cfg, seed=8)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], so[k]) for k in sa)


# -----------------------------------------------------------------------------
# training


@pytest.mark.parametrize(
    "cfg",
    [lstm_cfg(layers=2, dropout_input=0.5, dropout_hidden=0.5, dropout_output=0.5, dropout_words=0.2),
     rhn_cfg(emb=8, tied=True, dropout_input=0.5, dropout_hidden=0.25, dropout_output=0.5,
             dropout_words=0.2)],
    ids=["lstm", "rhn-tied"],
)
def test_backward_through_a_training_window_reaches_every_parameter(cfg):
    model = make(cfg).train()
    tokens = random_tokens(9, 4)
    logits, state = model(tokens[:-1], model.init_state(4))
    F.cross_entropy(logits.reshape(-1, VOCAB), tokens[1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
