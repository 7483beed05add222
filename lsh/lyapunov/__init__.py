"""
Lyapunov spectra of the recurrent models by the QR method (paper section 3; Vogt et al. 2022).

K sample sequences advance together as one batch, from the zero state. Warm-up steps only
advance the state. Then at every step an orthonormal basis Q (L x k, starting as the first k
columns of the identity) is pushed through the step Jacobian J and re-orthonormalised:

    Q, R = qr(J Q),  signs flipped so that diag(R) > 0,  log diag(R) accumulated.

With `qr_every` m > 1, Q goes through m Jacobians before one QR; diag(R) of that QR is the
product of the m per-step diagonals (R's of a QR of a product multiply), so the result is
the same up to rounding. The exponents of one sample are its accumulated logs divided by
the number of steps T, sorted in descending order; the spectrum is the mean of the K
samples' sorted spectra (eq. 1 of the paper averages by QR column; the two agree once the
columns are ordered). Natural log per step by default; log_base 2 gives the reference
code's unit.

Layouts. With per-layer blocks (below) each exponent belongs to a layer. `layout: blocks`
(the default, as the reference code compares spectra) keeps that: each layer's exponents
sorted within the layer, layers in order. `layout: sorted` sorts all exponents into one
vector. Both are computed from the same run (`Spectrum.layouts`); with one block (an RHN,
a one-layer LSTM, the full Jacobian) they are the same vector.

The floor. A saturated unit (all its gates at exactly 0 or 1) gives a zero row of J and
r = 0: a direction contracted to nothing, log r = -inf. Every per-step factor is floored
at `min_exponent` nats (default -16, about float32's resolution: e^-16 ~ 1e-7), in every
dtype, so that one dead unit costs the same in float32 and float64 and cannot place a
model orders of magnitude away from every other; a direction dead at every step reads
exactly `min_exponent`. How many exponents met the floor is recorded (`clipped`).

Jacobians (J is always the Jacobian d state' / d state, applied as J Q; the reference code
used the transpose for the LSTM):

- analytic, stacked LSTM (`LSTMJacobian`, the one place it lives). State `h`: the h of all
  layers, with the previous c held fixed (supplement B.1, the paper's choice); state `hc`:
  the full (h, c), the LSTM's true state. Every block is a sum of weight matrices whose rows
  are scaled by gate derivatives, built by broadcasting (a[:, None] * U), never as dense
  diagonal matrices.
- analytic, RHN (`RHNJacobian`): the product of the micro-step Jacobians (coupled carry
  gate), applied to Q one micro-step at a time.
- autograd (`AutogradJacobian`): torch.func.jacrev vectorised over the K samples with vmap,
  for any model with a one-step transition; `spectrum_of_map` exposes it for any step
  function h' = step(h, x).

Per-layer blocks. The h-state Jacobian of a stacked LSTM is block lower-triangular (layer
l's new h depends on layer l-1's new h, hence on the old h of layers <= l), so its
spectrum is the union of the spectra of the diagonal blocks J_ll = dh_l'/dh_l. The default
for state `h` with all exponents propagates one H x H basis per layer (for n layers about
n^2 fewer flops in the QR and 2n - 1 times fewer in J Q). Finite runs of the two differ by
a transient that shrinks like 1/T, so the choice is made by the settings, not the method:
the autograd path then keeps only the diagonal blocks of its full Jacobian, and both
methods give the same numbers (`per_layer=False` asks for the full Jacobian). With
`exponents: k` below the state size, or with state `hc`, the full Jacobian is used: the k
leading exponents of the union are not the k leading ones of any fixed set of blocks, so
the pipeline takes a k-column Q over the whole state (O(L^2 k) per step instead of
O(L^3)). (The hc Jacobian is block-triangular by layer too, with 2H-blocks; not exploited.)
The library's module_spectrum keeps the blocks for `exponents: k` as well (min(k, H) columns
per block, each sample's k largest of the union): docs/api.md, "The convention".

Where the time goes: per step, J Q and the QR (Householder, O(L k^2)). Jacobian blocks are
built by row scaling from one batched step's gates; the weights are sliced and cast once;
the K samples are one batch throughout. With a dense square Q, Q stays in the factored
form geqrf returns and J Q is one ormqr (see `qr_loop`).

    qr.py        the QR loop, both layouts, the floor (qr_loop, finish, Spectrum)
    lstm.py      the stacked LSTM's analytic Jacobian (LSTMJacobian; a model's or a torch.nn.LSTM's)
    rhn.py       the RHN's analytic Jacobian (RHNJacobian)
    stacked.py   stacked cells (LSTM, GRU, RNN): torch.nn weights per layer, the layer-by-layer h Jacobian
    gru.py       torch.nn.GRU's analytic Jacobian (GRUJacobian)
    rnn.py       torch.nn.RNN's analytic Jacobian, tanh or relu (RNNJacobian)
    autograd.py  any step function by torch.func (AutogradJacobian, spectrum_of_map)
    spectrum.py  a model's spectrum and the validation sequences (model_spectra, METHODS)
    modules.py   the spectrum of a user's torch.nn.LSTM, GRU or RNN or cell on given inputs (module_spectrum),
                 of any step function (step_spectrum)
"""

from lsh.config import LyapunovConfig
from lsh.lyapunov.autograd import AutogradJacobian, spectrum_of_map
from lsh.lyapunov.gru import GRUJacobian
from lsh.lyapunov.lstm import LSTMJacobian
from lsh.lyapunov.modules import module_spectrum, step_spectrum
from lsh.lyapunov.qr import (
    DTYPES,
    LAYOUTS,
    MIN_EXPONENT,
    Spectrum,
    Tangent,
    finish,
    qr_loop,
    resolve_dtype,
    row_scaled_sum,
)
from lsh.lyapunov.rhn import RHNJacobian
from lsh.lyapunov.rnn import RNNJacobian
from lsh.lyapunov.spectrum import (
    METHODS,
    STATES,
    make_tangent,
    model_jacobian,
    model_spectra,
    model_spectrum,
    sample_offsets,
    state_size,
    uses_per_layer,
    validation_tokens,
)

__all__ = [
    "LyapunovConfig", "AutogradJacobian", "spectrum_of_map", "LSTMJacobian", "DTYPES", "LAYOUTS", "MIN_EXPONENT",
    "Spectrum", "Tangent", "finish", "qr_loop", "resolve_dtype", "row_scaled_sum", "RHNJacobian", "METHODS",
    "STATES", "make_tangent", "model_jacobian", "model_spectra", "model_spectrum", "sample_offsets", "state_size",
    "uses_per_layer", "validation_tokens", "GRUJacobian", "RNNJacobian", "module_spectrum",
    "step_spectrum",
]
