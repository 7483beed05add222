"""Float tolerances derived from the computation's precision, not from one machine's rounding.

Which rounding a result gets depends on the machine (an AVX-512 kernel sums in another order than an
AVX2 one, MKL takes other branches on other CPUs), so a tolerance fitted to the difference seen on one
machine fails on the next. The tests bound a difference instead by what can produce it: the dtype's
machine epsilon, the number of rounded operations a value accumulates, the size of the values, and for
the Lyapunov spectra the conditioning of the QR method on the test's Jacobians (`spectrum_condition`).

Where two computations of one quantity run the very same operations in the same order, the tests
compare them exactly: those bits cannot differ on any machine.
"""

from __future__ import annotations

import torch

from lsh import lyapunov

EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7: the spacing of float32 numbers at 1 (twice the unit roundoff)
EPS64 = torch.finfo(torch.float64).eps  # 2.22e-16
# The worst-case bounds below carry small constants (Householder QR's, a matrix product's) and leave out
# second-order terms; 4 covers them with room, while the bounds stay orders of magnitude below the effects
# the tests detect (each test says so where it matters).
SAFETY = 4


def accumulated(eps: float, n: int, scale: float = 1.0) -> float:
    """A bound on the rounding error of one result of n rounded operations on values of size `scale`.

    Each rounding is at most eps / 2 relative and n of them accumulate to at most about n eps / 2
    (Higham's gamma_n, the worst case; typical errors grow like sqrt(n)); times 2 SAFETY: SAFETY n eps.
    For an ill-conditioned problem, `scale` includes the condition number (the error of the result
    relative to its size is eps times that)."""
    return SAFETY * n * eps * scale


def two_ways(eps: float, n: int, scale: float = 1.0) -> float:
    """Two computations of one quantity by different operation orders: each within `accumulated` of the
    exact value, so they differ by at most twice that."""
    return 2 * accumulated(eps, n, scale)


def spectrum_rounding(eps: float, n: int, condition: float, steps: int, samples: int, size: float = 16.0) -> float:
    """A bound on the rounding of one Lyapunov spectrum: its Jacobians, products and QRs in the dtype of
    `eps`, n rounded terms to an entry, amplified by the QR loop's `condition` (`spectrum_condition`); and
    the float64 sums of the `steps` per-step logs into each exponent (each at most `size`: the floor is
    -16 nats, and log ||J|| of these models is far smaller), the division, and the mean over `samples`."""
    return accumulated(eps, n, condition) + accumulated(EPS64, steps + samples + 1, size)


def step_jacobians(tangent, warmup: int, steps: int, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """The Jacobian blocks [K, blocks, size, size] (as float64, on the CPU) of the `steps` steps after
    `warmup`, from a fresh lsh.lyapunov Tangent in `dtype` (one the QR loop has not run): J applied to the
    identity, as the loop applies it to Q."""
    K, nb, Lb = tangent.samples, tangent.blocks, tangent.block_size
    for t in range(warmup):
        tangent.advance(t)
    eye = torch.eye(Lb, dtype=dtype).expand(K, nb, Lb, Lb).contiguous()
    with torch.no_grad():
        return [tangent.propagate(warmup + j, eye.clone()).to(torch.float64).cpu() for j in range(steps)]


class _Probe(lyapunov.Tangent):
    """Replays recorded Jacobian blocks [K, blocks, size, size] (one per step, no warm-up), perturbed as
    rounding perturbs them: every J Q is (J + E) Q with E = eta |J| u, and every entry of the product a QR
    factors (every `qr_every` steps and at the end) moves by eta times its size (u uniform in [-1, 1]),
    with new draws at every step or (`coherent`) the same: a map that repeats itself rounds alike at every
    step, and its errors add up instead of averaging out."""

    dense = False

    def __init__(self, jacobians: list[torch.Tensor], qr_every: int, eta: float, seed: int, coherent: bool) -> None:
        self.mats, self.qr_every, self.eta, self.seed, self.coherent = jacobians, qr_every, eta, seed, coherent
        self.samples, self.blocks, self.block_size = jacobians[0].shape[:3]

    def _noise(self, t: int, what: int, shape: torch.Size) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + what + (0 if self.coherent else 2 * t))  # alike for +-eta
        return torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1

    def advance(self, t: int) -> None:
        pass

    def propagate(self, t: int, q: torch.Tensor) -> torch.Tensor:
        J = self.mats[t]
        y = (J + self.eta * J.abs() * self._noise(t, 0, J.shape)) @ q
        if (t + 1) % self.qr_every == 0 or t == len(self.mats) - 1:
            y = y + self.eta * y.abs() * self._noise(t, 1, y.shape)
        return y


def spectrum_condition(jacobians: list[torch.Tensor], k: int | None = None, qr_every: int = 1,
                       min_exponent: float = -16.0, eta: float = 1e-12, seed: int = 0) -> float:
    """The condition number of the QR method's exponents (per sample and column, nats per step) with
    respect to relative perturbations of the size of one rounding, measured by central differences.

    The QR loop's rounding is such perturbations: a matrix product's is exactly a relative perturbation
    of its left factor's entries (fl(J y) = (J + E) y, |E| <= n eps/2 |J|), a Jacobian's construction
    rounds each entry alike, and a Householder QR's is a perturbation of the factored matrix in which each
    entry moves about in proportion to its size (a reflection's rounding at a row scales with that row's
    entries; the per-column worst case, eps times the column's norm, overstates it by orders of magnitude
    for the hc state, whose c rows are small). The probe applies them with relative size eta at every step
    and every QR, with signs + and - and fixed random directions, new at every step or the same at every
    step: the larger response over eta is the condition number, and rounding of relative size n eps / 2
    moves the exponents by about that times n eps / 2 (`accumulated`). It includes what a bound per step
    misses: a basis Q not yet aligned with the Lyapunov vectors after a short run carries a perturbation
    into every later step, and a QR of the product of m Jacobians, whose columns all lean toward the
    leading direction, loses accuracy like eps e^(m (lambda_1 - lambda_k)). Sorting and averaging over
    samples do not increase it.

    eta is far above eps, so that the probe's own rounding is small against the response, and small
    enough for the response to be linear, as checked below (a perturbation of the basis that is not small
    over the T steps bends the response; the problem is then too ill-conditioned to compare spectra)."""
    nb, Lb = jacobians[0].shape[1:3]
    k = nb * Lb if k is None else k
    condition = 0.0
    for coherent in (False, True):
        runs = [lyapunov.qr_loop(_Probe(jacobians, qr_every, sign * eta, seed, coherent), 0, len(jacobians), k,
                                 qr_every, torch.float64, torch.device("cpu"), min_exponent)[0] for sign in (1, -1)]
        condition = max(condition, float((runs[0] - runs[1]).abs().max()) / (2 * eta))
    assert condition * eta * len(jacobians) < 0.1, f"eta {eta} leaves the linear range (condition {condition:.3g})"
    return condition
