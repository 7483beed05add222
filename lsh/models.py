"""
The two recurrent language models that are pruned and searched: a stacked LSTM and a
Recurrent Highway Network (RHN, Zilly et al. 2017). Hyperparameters follow the paper's
supplement, Table 1 (LSTM: 2 x 1500, untied; RHN: depth 10, 830, tied, coupled carry gate).

Both models share one small interface, used by the training and Lyapunov stages:

    forward(tokens[T, B], state)  -> logits[T, B, vocab], new_state   (training / evaluation)
    init_state(B), detach_state(state)                                  (truncated BPTT)
    embed(tokens) -> x_emb, step(state, x_emb[B, emb]) -> new_state    (Lyapunov spectrum)
    recurrent_weights(), sparsifiable_weights()                         (by parameter name)

`step` is the same transition as `forward` in eval mode, written in plain tensor ops so that
torch.func (jacrev, vmap) can differentiate it; `forward` keeps the fused nn.LSTM kernel.
Only models live here: no training loop, no I/O.
"""

import os
from dataclasses import asdict, dataclass
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lsh import numerics
from lsh.config import ModelParams, model_problems

# LSTM: (h, c), each [layers, B, hidden] as nn.LSTM uses; RHN: s of shape [B, hidden].
State = Union[Tensor, tuple[Tensor, Tensor]]

MODEL_TYPES = ("lstm", "rhn")

# Initial transform-gate bias of the RHN. Negative, so that t = sigmoid(b_T) ~ 0.12 at the
# start and every micro-layer mostly carries its state (s' ~ s): the usual highway-network
# choice (Srivastava et al. 2015; Zilly et al. use -2 on PTB), which keeps gradients alive
# through depth 10 x 35 time steps before training has shaped the gates.
RHN_TRANSFORM_BIAS = -2.0

# The fused nn.LSTM below runs ATen's cell, not oneDNN's, in portable numerics (its bits move with the CPU).
numerics.pin_torch()

# Embedding and decoder init, as pytorch/examples word_language_model and Selfish-RNN.
EMBEDDING_INIT_RANGE = 0.1


# -----------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in checkpoints as `model.config`).

    Dropouts per model:
      LSTM (as pytorch/examples and Selfish-RNN; ordinary per-element dropout, new mask
      at every time step):
        dropout_input  - on the embedding output;
        dropout_hidden - between stacked layers (nn.LSTM's `dropout`; no effect when layers == 1);
        dropout_output - on the top layer's output, before the decoder;
        dropout_words  - word-type dropout on the embedding, same as for the RHN (0 disables).
      RHN (variational: every mask is drawn once per forward call, i.e. per [T, B] window,
      and shared over its time steps):
        dropout_input  - on the input x (mask [B, emb]);
        dropout_hidden - on the state s before every recurrent matrix R_l (one mask [B, hidden]
                         shared by all micro-layers, as in the reference code);
        dropout_output - on the layer output before the decoder (mask [B, hidden]);
        dropout_words  - drops whole word types: one keep/drop draw per vocabulary entry per
                         window, shared over the batch (AWD-LSTM's embedded_dropout, as in the
                         reference code).
    """

    type: str  # "lstm" or "rhn"
    vocab: int
    emb: int
    hidden: int
    layers: int = 1  # stacked LSTM layers; the RHN has exactly 1 layer
    depth: int = 1  # RHN recurrence depth L (micro-layers per time step); ignored by the LSTM
    tied: bool = False  # decoder.weight is embedding.weight (needs emb == hidden)
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    dropout_output: float = 0.0
    dropout_words: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in MODEL_TYPES:
            allowed = ", ".join(MODEL_TYPES)
            raise ValueError(f"ModelConfig.type = {self.type!r}: allowed are {allowed}")
        for name in ("vocab", "emb", "hidden", "layers", "depth"):
            value = getattr(self, name)
            # bool is an int subclass; True as a size is a mistake, not a 1
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} = {value!r}: must be an integer >= 1")
        if not isinstance(self.tied, bool):
            raise ValueError(f"ModelConfig.tied = {self.tied!r}: must be true or false")
        problems = model_problems(self.type, self.emb, self.hidden, self.layers, self.tied)
        if problems:
            raise ValueError("; ".join(problems))
        for name in ("dropout_input", "dropout_hidden", "dropout_output", "dropout_words"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not (0.0 <= value < 1.0):  # also rejects nan
                raise ValueError(f"ModelConfig.{name} = {value!r}: must be a number in [0, 1)")


    @classmethod
    def from_params(cls, model: ModelParams, vocab: int) -> "ModelConfig":
        """The model the params' model section describes, for a vocabulary of `vocab` words."""
        return cls(vocab=vocab, **asdict(model))


# -----------------------------------------------------------------------------
# Dropout helpers (shared by both models)


def variational_mask(p: float, shape: tuple[int, ...], like: Tensor) -> Optional[Tensor]:
    """A keep-mask scaled by 1/(1-p), or None when p == 0.

    Drawn once and broadcast over the time steps of a window, so the same units are dropped
    at every step (Gal & Ghahramani 2016): per-step masks on a recurrent state would inject
    fresh noise into the dynamics at every step.
    """
    if p == 0.0:
        return None
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p) / (1.0 - p)


def word_dropout(x: Tensor, tokens: Tensor, p: float, vocab: int) -> Tensor:
    """Zero the embeddings of whole word types: x [T, B, emb] for tokens [T, B].

    One draw per vocabulary entry per window, shared over the batch; every occurrence of a
    dropped word is zeroed. Scaling the looked-up rows (mask[tokens]) is the same as masking
    the embedding matrix but costs T*B instead of vocab*emb.
    """
    keep = variational_mask(p, (vocab,), x)
    if keep is None:
        return x
    return x * keep[tokens].unsqueeze(-1)  # [T, B, 1] broadcast over emb


# -----------------------------------------------------------------------------
# Shared parts of both models


class LanguageModel(nn.Module):
    """Base of both models: embedding, decoder, tying and the name-keyed weight accessors.

    Subclasses create `self.embedding` first (so that with tying `named_parameters()`, which
    lists a shared tensor once under its first name, reports it as `embedding.weight`), then
    their recurrent part, then call `_make_decoder()`.
    """

    def __init__(self, cfg: ModelConfig, expected_type: str) -> None:
        super().__init__()
        if cfg.type != expected_type:
            raise ValueError(
                f"ModelConfig.type = {cfg.type!r}: {type(self).__name__} builds {expected_type!r}"
            )
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab, cfg.emb)

    def _make_decoder(self) -> None:
        cfg = self.config
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab)
        nn.init.uniform_(self.embedding.weight, -EMBEDDING_INIT_RANGE, EMBEDDING_INIT_RANGE)
        nn.init.uniform_(self.decoder.weight, -EMBEDDING_INIT_RANGE, EMBEDDING_INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tied:
            # one Parameter, two uses; the decoder's draw above is discarded but still taken,
            # so that the RNG stream after construction does not depend on tying
            self.decoder.weight = self.embedding.weight

    def _input_dropout_embed(self, tokens: Tensor) -> Tensor:
        """Embedding lookup with word-type dropout in training mode. [T, B] -> [T, B, emb]."""
        x = self.embedding(tokens)
        if self.training:
            x = word_dropout(x, tokens, self.config.dropout_words, self.config.vocab)
        return x

    def embed(self, tokens: Tensor) -> Tensor:
        """Input embedding without any dropout, whatever the mode. [...] -> [..., emb]."""
        return self.embedding(tokens)

    def detach_state(self, state: State) -> State:
        """Cut the graph at a window boundary (truncated BPTT), keeping the values."""
        if isinstance(state, Tensor):
            return state.detach()
        return tuple(s.detach() for s in state)

    def sparsifiable_weights(self) -> dict[str, nn.Parameter]:
        """Every weight matrix (no biases) by qualified parameter name.

        These are the tensors that get sparse masks. With tying the decoder is the
        embedding's tensor; named_parameters() lists it once, as `embedding.weight`.
        """
        return {name: p for name, p in self.named_parameters() if p.dim() >= 2}


# -----------------------------------------------------------------------------
# Stacked LSTM


class LSTMLanguageModel(LanguageModel):
    """Embedding -> stacked nn.LSTM -> dropout -> decoder (Zaremba et al. / Selfish-RNN).

    The forward pass runs the fused nn.LSTM kernel; `step` recomputes the same cell from the
    nn.LSTM's own parameters in plain tensor ops for the Jacobians of the Lyapunov stage.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, "lstm")
        # nn.LSTM applies `dropout` between layers only; it warns if set with one layer
        self.lstm = nn.LSTM(
            cfg.emb,
            cfg.hidden,
            num_layers=cfg.layers,
            dropout=cfg.dropout_hidden if cfg.layers > 1 else 0.0,
        )
        self._make_decoder()

    def init_state(self, batch: int) -> tuple[Tensor, Tensor]:
        """Zero (h, c), each [layers, B, hidden], on the model's device and dtype."""
        w = self.decoder.weight
        shape = (self.config.layers, batch, self.config.hidden)
        return w.new_zeros(shape), w.new_zeros(shape)

    def forward(
        self, tokens: Tensor, state: Optional[tuple[Tensor, Tensor]] = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """tokens [T, B] -> logits [T, B, vocab], (h, c) after the last step."""
        if state is None:
            state = self.init_state(tokens.shape[1])
        x = self._input_dropout_embed(tokens)  # [T, B, emb]
        x = F.dropout(x, self.config.dropout_input, self.training)
        y, state = self.lstm(x, state)  # [T, B, hidden]
        y = F.dropout(y, self.config.dropout_output, self.training)
        return self.decoder(y), state

    def step(self, state: tuple[Tensor, Tensor], x_emb: Tensor) -> tuple[Tensor, Tensor]:
        """One time step of all layers, no dropout: ((h, c), x [B, emb]) -> (h', c').

        h, c are [layers, B, hidden] (or [layers, hidden] under vmap: only the last axis
        is assumed). Layer k reads the new h of layer k-1. PyTorch's gate order i, f, g, o:
            gates = W_ih x + b_ih + W_hh h + b_hh,  split in 4 along the last axis
            c' = sig(f) * c + sig(i) * tanh(g),    h' = sig(o) * tanh(c')
        """
        h, c = state
        inp = x_emb
        new_h, new_c = [], []
        for k in range(self.config.layers):
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            w_ih, w_hh, b_ih, b_hh = (getattr(self.lstm, f"{n}_l{k}") for n in names)
            gates = F.linear(inp, w_ih, b_ih) + F.linear(h[k], w_hh, b_hh)  # [..., 4*hidden]
            i, f, g, o = gates.chunk(4, dim=-1)  # each [..., hidden]
            c_k = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
            h_k = torch.sigmoid(o) * torch.tanh(c_k)
            new_h.append(h_k)
            new_c.append(c_k)
            inp = h_k
        return torch.stack(new_h), torch.stack(new_c)

    def recurrent_weights(self) -> dict[str, Tensor]:
        """Per layer k, by qualified name (all nn.LSTM parameters):

            lstm.weight_ih_l{k} [4*hidden, in_k]  (in_0 = emb, else hidden)
            lstm.weight_hh_l{k} [4*hidden, hidden]
            lstm.bias_ih_l{k}, lstm.bias_hh_l{k} [4*hidden]
        Rows are the gate blocks i, f, g, o (PyTorch order), `hidden` rows each; e.g. U_f is
        weight_hh_l{k}[hidden:2*hidden].
        """
        return {name: p for name, p in self.named_parameters() if name.startswith("lstm.")}


# -----------------------------------------------------------------------------
# Recurrent Highway Network


class RHNLanguageModel(LanguageModel):
    """Embedding -> one RHN layer of depth L with coupled carry gate -> decoder.

    Micro-layer l = 1..L of one time step (x enters only the first):
        [a_H; a_T] = W x [l == 1] + R_l s + b_l    W: [2*hidden, emb], R_l: [2*hidden, hidden]
        h = tanh(a_H),  t = sigmoid(a_T),  s' = h * t + s * (1 - t)
    The output of a time step is the state after the last micro-layer.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, "rhn")
        H = cfg.hidden
        # W feeds only micro-layer 1, whose bias is in R_0: no bias of its own
        self.W = nn.Linear(cfg.emb, 2 * H, bias=False)
        self.R = nn.ModuleList(nn.Linear(H, 2 * H) for _ in range(cfg.depth))
        # W and R_l keep nn.Linear's default init (as the reference code); biases: H part 0,
        # T part negative (see RHN_TRANSFORM_BIAS) so that the layer starts near the identity
        with torch.no_grad():
            for R in self.R:
                R.bias[:H].zero_()
                R.bias[H:].fill_(RHN_TRANSFORM_BIAS)
        self._make_decoder()

    def init_state(self, batch: int) -> Tensor:
        """Zero s [B, hidden] on the model's device and dtype."""
        return self.decoder.weight.new_zeros(batch, self.config.hidden)

    def _transition(self, s: Tensor, wx: Tensor, mask_h: Optional[Tensor]) -> Tensor:
        """All L micro-layers of one time step. s [..., hidden], wx = W x [..., 2*hidden].

        mask_h (or None) multiplies s on its way into every R_l; the carry path s * (1 - t)
        uses the undropped state.
        """
        H = self.config.hidden
        for l, R in enumerate(self.R):
            a = R(s if mask_h is None else s * mask_h)  # [..., 2*hidden]
            if l == 0:
                a = a + wx
            h = torch.tanh(a[..., :H])
            t = torch.sigmoid(a[..., H:])
            s = h * t + s * (1.0 - t)
        return s

    def forward(self, tokens: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """tokens [T, B] -> logits [T, B, vocab], s after the last step [B, hidden]."""
        cfg = self.config
        T, B = tokens.shape
        s = self.init_state(B) if state is None else state
        x = self._input_dropout_embed(tokens)  # [T, B, emb]
        mask_h = mask_o = None
        if self.training:
            # variational: one mask per window, broadcast over the T steps
            mask_x = variational_mask(cfg.dropout_input, (B, cfg.emb), x)
            mask_h = variational_mask(cfg.dropout_hidden, (B, cfg.hidden), x)
            mask_o = variational_mask(cfg.dropout_output, (B, cfg.hidden), x)
            if mask_x is not None:
                x = x * mask_x
        # the input projection does not depend on s: one matmul for the whole window
        wx = self.W(x)  # [T, B, 2*hidden]
        outputs = []
        for t in range(T):
            s = self._transition(s, wx[t], mask_h)
            outputs.append(s)
        y = torch.stack(outputs)  # [T, B, hidden]
        if mask_o is not None:
            y = y * mask_o
        return self.decoder(y), s

    def step(self, state: Tensor, x_emb: Tensor) -> Tensor:
        """One time step (all L micro-layers), no dropout: (s [B, hidden], x [B, emb]) -> s'.

        Works on any leading shape (e.g. s [hidden], x [emb] under vmap).
        """
        return self._transition(state, self.W(x_emb), None)

    def recurrent_weights(self) -> dict[str, Tensor]:
        """By qualified name:

            W.weight    [2*hidden, emb]     input matrix, used by micro-layer 1 only
            R.{l}.weight [2*hidden, hidden]  recurrent matrix of micro-layer l (0-based)
            R.{l}.bias   [2*hidden]
        Rows are the blocks H (tanh, rows :hidden) then T (transform gate, rows hidden:).
        """
        return {name: p for name, p in self.named_parameters() if name.startswith(("W.", "R."))}


# -----------------------------------------------------------------------------

MODELS: dict[str, type[LanguageModel]] = {
    "lstm": LSTMLanguageModel,
    "rhn": RHNLanguageModel,
}
assert tuple(MODELS) == MODEL_TYPES


def build_model(cfg: ModelConfig) -> LanguageModel:
    """The model class named by cfg.type, built from cfg (weights drawn from torch's RNG)."""
    try:
        cls = MODELS[cfg.type]
    except KeyError:
        raise ValueError(f"model type {cfg.type!r}: allowed are {', '.join(MODELS)}") from None
    return cls(cfg)


# -----------------------------------------------------------------------------
# What a model needs of the machine, known before any tensor is allocated


def parameter_count(cfg: ModelConfig) -> int:
    """The number of parameters `build_model(cfg)` makes (embedding, recurrent cell, decoder)."""
    H, E, V = cfg.hidden, cfg.emb, cfg.vocab
    if cfg.type == "lstm":
        cell = sum(4 * H * ((E if layer == 0 else H) + H) + 8 * H for layer in range(cfg.layers))
    else:
        cell = E * 2 * H + cfg.depth * (H * 2 * H + 2 * H)
    return V * E + cell + (0 if cfg.tied else H * V) + V


def training_bytes(cfg: ModelConfig, batch: int, bptt: int) -> int:
    """A lower bound of what training needs: weights, gradients, averages and masks (about 5 copies of
    the parameters in float32) and the logits of one window with their gradient (3 x batch x bptt x V)."""
    return 4 * (5 * parameter_count(cfg) + 3 * batch * bptt * cfg.vocab)


def check_fits(cfg: ModelConfig, batch: int, bptt: int, device: torch.device, what: str = "the model") -> None:
    """Refuse, before any allocation, a model whose training cannot fit in the device's memory, saying how
    much it needs (an allocator's failure deep in the first batch says neither)."""
    need = training_bytes(cfg, batch, bptt)
    if device.type == "cuda":
        have, where = torch.cuda.get_device_properties(device).total_memory, torch.cuda.get_device_name(device)
    else:
        try:
            have, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"
        except (ValueError, OSError, AttributeError):
            return  # no way to know: let the allocator speak
    if need > have:
        from lsh.errors import LshError

        size = f"{cfg.layers} x {cfg.hidden}" if cfg.type == "lstm" else f"depth {cfg.depth}, {cfg.hidden} units"
        raise LshError(f"{what} ({cfg.type.upper()} {size}, embedding {cfg.emb}, vocabulary {cfg.vocab}) has "
                       f"{parameter_count(cfg) / 1e9:.3g} G parameters: "
                       f"training needs at least {need / 2**30:.1f} GiB, {where} has {have / 2**30:.1f} GiB. "
                       "Lower model.hidden, model.emb or model.layers")
