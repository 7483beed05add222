"""An Optuna pruner that eliminates trials by the LS distance, as LSH's rounds do (the only module that
imports optuna).

In the objective, beside the usual `trial.report(loss, epoch)`, report the model's Lyapunov spectrum
of every epoch 0 (the initialisation), 1, 2, ... with `report_spectrum(trial, spectrum, epoch)`. At
each rung (by default the paper's e0 = 2 and then every ei = 2 epochs), `LyapunovPruner` measures the
trial's LS distance to the dense reference (`lsh.ls_distance` of its spectra of epochs 0..rung against
the dense model's) and prunes it when it is beyond the kept fraction (the nearer half by default) of
the distances of every trial that reported a spectrum at that rung: complete, pruned or running.

Everything lives in the study's storage, as trial user attributes: the spectra (`lsh_spectrum_<epoch>`,
a list of floats, None where an exponent is not finite), each rung's distance (`lsh_distance_<rung>`,
None when not finite), the trials measured when it was judged there (`lsh_measured_<rung>`) and why a
trial was pruned (`lsh_pruned`: its rung and distance, or the epoch whose spectrum was not finite);
and, as a study user attribute, the dense reference's fingerprint (`lsh_dense`), which every worker's
pruner must match. So the pruner works with an in-memory study, with an RDB or journal storage shared
by several worker processes (each decides from every worker's trials, against one dense reference),
and with any sampler; a new pruner on the same storage decides as the old one did.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import optuna

from lsh.errors import LshError
from lsh.search.ranking import DISTANCES, EMBEDDINGS, PCA_FITS, ls_distances
from lsh.spectrum_options import check_alike, describe, options_of

SPECTRUM = "lsh_spectrum_"  # + epoch: a trial's spectrum of that epoch
DISTANCE = "lsh_distance_"  # + rung: its LS distance at that rung
PRUNED = "lsh_pruned"  # why the pruner pruned it (its rung and distance, or a spectrum that is not finite)
MEASURED = "lsh_measured_"  # + rung: the trial numbers whose distances its decision there compared
DENSE = "lsh_dense"  # study user attribute: the fingerprint of the dense reference every worker's pruner uses
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)


def _spectrum(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        out = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise LshError(f"{what}: expected a spectrum, a 1-D array of exponents ({e})") from None
    if out.ndim != 1 or out.size == 0:
        raise LshError(f"{what}: expected a spectrum, a 1-D array of exponents, got shape {tuple(out.shape)}")
    return out


def _epoch(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise LshError(f"{what}: an epoch is a whole number >= 0 (0: the initialisation), got {value!r}")
    return int(value)


def report_spectrum(trial: optuna.trial.Trial, spectrum: Any, epoch: int) -> None:
    """Store `trial`'s Lyapunov spectrum (1-D: numpy array, torch tensor or list) of `epoch` (0: the
    initialisation) in the study's storage, as the user attribute `lsh_spectrum_<epoch>` (a list of
    floats, None where an exponent is not finite), for LyapunovPruner. Call it every epoch from 0 on,
    beside `trial.report(value, epoch)`. A spectrum whose length differs from the study's
    LyapunovPruner's dense reference, or that carries other options than it (lsh.spectrum_options), is
    refused."""
    epoch = _epoch(epoch, f"report_spectrum (trial {trial.number})")
    values = _spectrum(spectrum, f"report_spectrum (trial {trial.number}, epoch {epoch})")
    pruner = getattr(getattr(trial, "study", None), "pruner", None)
    if isinstance(pruner, LyapunovPruner):
        if len(values) != pruner.exponents:
            raise LshError(f"report_spectrum (trial {trial.number}, epoch {epoch}): a spectrum of {len(values)} "
                           f"exponents, but the pruner's dense reference has {pruner.exponents}: compute both alike")
        check_alike(pruner.options, options_of(spectrum, "report_spectrum"),
                    f"report_spectrum (trial {trial.number}, epoch {epoch})", ("dense reference's", "trial's"))
    key = f"{SPECTRUM}{epoch}"
    if key in trial.user_attrs:  # as Optuna's trial.report: the first value of a step stays
        warnings.warn(f"report_spectrum (trial {trial.number}): epoch {epoch} was reported already; the first "
                      "spectrum is kept and this one ignored", UserWarning, stacklevel=2)
        return
    finite = [float(v) if math.isfinite(v) else None for v in values]
    if None in finite:
        warnings.warn(f"report_spectrum (trial {trial.number}, epoch {epoch}): {finite.count(None)} of {len(finite)} "
                      "exponents are not finite (NaN or infinite weights or inputs?); LyapunovPruner prunes such "
                      "a trial", UserWarning, stacklevel=2)
    trial.set_user_attr(key, finite)


def _dense_array(dense: Any) -> np.ndarray:
    """The dense reference's spectra as [epochs, L], row e the spectrum of epoch e."""
    if isinstance(dense, Mapping):
        epochs = {_epoch(e, "LyapunovPruner: the dense reference") for e in dense}
        missing = [e for e in range(max(epochs, default=0) + 1) if e not in epochs]
        if missing or not epochs:
            raise LshError("LyapunovPruner: the dense reference has no spectrum of epoch "
                           f"{missing[0] if epochs else 0} (it needs every epoch from 0, the initialisation, on)")
        rows = [_spectrum(dense[e], f"LyapunovPruner: the dense spectrum of epoch {e}") for e in sorted(epochs)]
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise LshError(f"LyapunovPruner: the dense spectra have different lengths ({sorted(lengths)})")
        points = np.array(rows)
    else:
        if hasattr(dense, "detach"):
            dense = dense.detach().cpu().numpy()
        try:
            points = np.asarray(dense, dtype=float)
        except (TypeError, ValueError) as e:
            raise LshError(f"LyapunovPruner: the dense reference is neither a mapping epoch -> spectrum nor an array "
                           f"[epochs, exponents] ({e})") from None
        if points.ndim != 2 or 0 in points.shape:
            raise LshError(f"LyapunovPruner: the dense reference must be an array [epochs, exponents] (row e: epoch e) "
                           f"or a mapping epoch -> spectrum, got shape {tuple(points.shape)}")
    bad = np.argwhere(~np.isfinite(points))
    if len(bad):
        raise LshError(f"LyapunovPruner: the dense spectrum of epoch {int(bad[0, 0])} is not finite")
    return points


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LshError(f"LyapunovPruner: {what} {value!r} must be a number")
    return float(value)


def _whole(value: Any, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise LshError(f"LyapunovPruner: {what} {value!r} must be a whole number >= {least}")
    return int(value)


def _one_of(name: str, value: Any, alias: str, old: Any, default: Any) -> Any:
    """An option given by its Optuna name or its earlier lsh alias, not both."""
    if value is not None and old is not None:
        raise LshError(f"LyapunovPruner: {name} and {alias} are one option (its Optuna name and its earlier name): "
                       f"give {name} only")
    return value if value is not None else old if old is not None else default


class LyapunovPruner(optuna.pruners.BasePruner):
    """Prune a trial at a rung when its LS distance to the dense reference is beyond the kept fraction of
    the distances of every trial that reported a spectrum at that rung (LSH's elimination, asynchronous).

    dense: the dense reference's spectra by epoch, a mapping epoch -> spectrum or an array whose row e is
    epoch e (epoch 0: the initialisation), every epoch up to the last rung (lsh.dense_spectra builds it
    from a model's checkpoints). The options are named as Optuna's pruners name theirs:
    n_warmup_steps, interval_steps: the rungs, the epochs at which trials are compared, are
    n_warmup_steps, n_warmup_steps + interval_steps, ... as far as the dense reference goes (default 2
    and 2: the paper's e0 = 2 and ei = 2); `rungs` lists them instead. reduction_factor: at a rung the
    nearest 1 / reduction_factor are kept (default 2, LSH's elimination of the farther half; of m
    trials measured, m - floor(m (1 - 1/reduction_factor)) are kept, ties to the earlier trial); `keep`
    gives that fraction directly. n_min_trials (alias min_trials): no trial is pruned at a rung until
    that many trials (itself included) were measured there. n_startup_trials: none is pruned until that
    many trials completed. embedding, distance, fit, random_state (alias seed): the LS distance's
    options (lsh.ls_distance; fit `pool` embeds every trial measured at the rung together, so its
    distances are recomputed from the stored spectra).

    A trial is judged once at each rung, at the first `should_prune()` once it has reached it (its
    epoch: the last `trial.report` step or its last reported spectrum, whichever is later); a trial
    that reported a spectrum that is not finite is pruned at once. Why a trial was pruned is in its
    `lsh_pruned` user attribute (and a trial pruned once is pruned whenever asked again). The first
    pruner to decide in a study stores the dense reference's fingerprint there; a pruner with another
    dense reference (another worker's, trained with another seed or measured with other options) is
    refused at its first decision, naming both. Refused (LshError): a rung with no dense spectrum, a
    reached rung with a spectrum missing for an epoch 0..rung, a spectrum of another length or other
    options than the dense reference's, attributes in the storage that lsh did not write.
    """

    def __init__(self, dense: Any, *, rungs: Iterable[int] | None = None, n_warmup_steps: int | None = None,
                 interval_steps: int | None = None, reduction_factor: float | None = None, keep: float | None = None,
                 n_min_trials: int | None = None, n_startup_trials: int = 0, embedding: str = "pca",
                 distance: str = "l2", fit: str = "pair", random_state: int | None = None,
                 min_trials: int | None = None, seed: int | None = None) -> None:
        self.dense = _dense_array(dense)
        self.options = options_of(dense, "LyapunovPruner: the dense reference")
        last = len(self.dense) - 1
        if rungs is not None and (n_warmup_steps is not None or interval_steps is not None):
            raise LshError("LyapunovPruner: give rungs, or n_warmup_steps and interval_steps, not both")
        if rungs is None:
            first = _whole(2 if n_warmup_steps is None else n_warmup_steps, "n_warmup_steps", 1)
            self.rungs = list(range(first, last + 1, _whole(2 if interval_steps is None else interval_steps,
                                                            "interval_steps", 1)))
        else:
            if isinstance(rungs, (str, bytes)) or not isinstance(rungs, Iterable):
                raise LshError(f"LyapunovPruner: rungs {rungs!r} must be a list of epochs")
            self.rungs = [_epoch(r, "LyapunovPruner: rungs") for r in rungs]
        if any(r < 1 for r in self.rungs) or self.rungs != sorted(set(self.rungs)):
            raise LshError(f"LyapunovPruner: rungs {self.rungs} must be epochs >= 1 in increasing order")
        beyond = [r for r in self.rungs if r > last]
        if beyond:
            raise LshError(f"LyapunovPruner: rung {beyond[0]} has no dense reference (the dense spectra are of epochs "
                           f"0..{last}): train the dense reference to epoch {self.rungs[-1]} or drop the rung")
        if not self.rungs:
            warnings.warn(f"LyapunovPruner: no rung (the dense spectra are of epochs 0..{last}, the default rungs "
                          "start at epoch 2): this pruner never prunes; give the dense spectra of epochs 0..2 or more, "
                          "or rungs=[1]", UserWarning, stacklevel=2)
        if keep is not None and reduction_factor is not None:
            raise LshError("LyapunovPruner: give reduction_factor (keep 1/reduction_factor) or keep, not both")
        if reduction_factor is not None:
            if not _number(reduction_factor, "reduction_factor") > 1.0:
                raise LshError(f"LyapunovPruner: reduction_factor {reduction_factor!r} must be above 1 (2 keeps the "
                               "nearer half)")
            keep = 1.0 / float(reduction_factor)
        keep = 0.5 if keep is None else _number(keep, "keep")
        if not 0.0 < keep < 1.0:
            raise LshError(f"LyapunovPruner: keep {keep!r} must be a fraction strictly between 0 and 1")
        self.keep = keep
        self.n_min_trials = _whole(_one_of("n_min_trials", n_min_trials, "min_trials", min_trials, 2),
                                   "n_min_trials", 1)
        self.n_startup_trials = _whole(n_startup_trials, "n_startup_trials", 0)
        for name, value, allowed in (("embedding", embedding, EMBEDDINGS), ("distance", distance, DISTANCES),
                                     ("fit", fit, PCA_FITS)):
            if value not in allowed:
                raise LshError(f"LyapunovPruner: {name} {value!r}: allowed are {', '.join(allowed)}")
        self.random_state = _whole(_one_of("random_state", random_state, "seed", seed, 0), "random_state", 0)
        self.embedding, self.distance, self.fit = embedding, distance, fit
        self._cache: dict[tuple, float] = {}  # (rung, a trajectory's spectra) -> its distance
        # what every worker's pruner on one study must share: the dense points, their options, and what
        # turns spectra into a distance
        described = json.dumps([self.dense.shape, self.options, embedding, distance, fit, self.random_state],
                               sort_keys=True).encode()
        self.reference = {"fingerprint": hashlib.sha256(self.dense.tobytes() + described).hexdigest()[:16],
                          "epochs": int(len(self.dense)), "exponents": self.exponents, "options": self.options}

    @property
    def min_trials(self) -> int:
        """n_min_trials, by its earlier name."""
        return self.n_min_trials

    @property
    def seed(self) -> int:
        """random_state, by its earlier name."""
        return self.random_state

    @property
    def exponents(self) -> int:
        """The spectrum's length (the dense reference's)."""
        return int(self.dense.shape[1])

    # --- what a trial reported -------------------------------------------------------------------

    def _spectra(self, trial: optuna.trial.FrozenTrial) -> dict[int, list | None]:
        out = {}
        for key, value in trial.user_attrs.items():
            if key.startswith(SPECTRUM) and key[len(SPECTRUM):].isdigit():
                if not isinstance(value, list) or not all(
                        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
                    raise LshError(f"LyapunovPruner: trial {trial.number}'s user attribute {key!r} is not a list of "
                                   "numbers: the storage was changed outside lsh")
                out[int(key[len(SPECTRUM):])] = value
        return out

    def _trajectory(self, trial: optuna.trial.FrozenTrial, spectra: dict, rung: int, strict: bool) -> np.ndarray | None:
        """The trial's spectra of epochs 0..rung [rung + 1, L] (NaN where not finite); None when one is
        missing, or (strict: the trial being judged) an LshError naming it."""
        missing = [e for e in range(rung + 1) if e not in spectra]
        if missing:
            if strict:
                raise LshError(f"LyapunovPruner: trial {trial.number} reached rung {rung} but reported no spectrum of "
                               f"epoch {missing[0]}: call lsh.report_spectrum(trial, spectrum, epoch) for every epoch "
                               f"0..{rung} before trial.should_prune()")
            return None
        rows = [np.array([math.nan if v is None else v for v in spectra[e]], dtype=float) for e in range(rung + 1)]
        wrong = next((e for e, r in enumerate(rows) if r.shape != (self.exponents,)), None)
        if wrong is not None:
            raise LshError(f"LyapunovPruner: trial {trial.number}'s spectrum of epoch {wrong} has {rows[wrong].size} "
                           f"exponents, but the dense reference has {self.exponents}")
        return np.array(rows)

    def _distance_of(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial, rung: int) -> float | None:
        """Another trial's distance at a rung from the storage: stored where the pruner judged it there,
        else from its stored spectra (pair fit); None when it reported no spectrum of some epoch 0..rung."""
        key = f"{DISTANCE}{rung}"
        if key in trial.user_attrs:
            value = trial.user_attrs[key]
            if value is None:
                return math.inf
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LshError(f"LyapunovPruner: trial {trial.number}'s user attribute {key!r} is {value!r}, not a "
                               "distance: the storage was changed outside lsh")
            return float(value)
        points = self._trajectory(trial, self._spectra(trial), rung, strict=False)
        if points is None:
            return None
        # keyed by the spectra themselves, never by a trial's or storage's identity: object addresses are
        # reused across studies, and a worker's trial ids are another storage's too
        cached = (rung, points.shape, points.tobytes())
        if cached not in self._cache:
            self._cache[cached] = self._pair_distance(points)
        return self._cache[cached]

    def _pair_distance(self, points: np.ndarray) -> float:
        if not np.all(np.isfinite(points)):
            return math.inf
        return ls_distances(self.dense, {"t": points}, embedding=self.embedding, distance=self.distance, fit="pair",
                            seed=self.random_state)["t"]

    # --- the decision ----------------------------------------------------------------------------

    def _check_reference(self, study: optuna.study.Study) -> None:
        """The study's dense reference is this pruner's: the first decision in a study records it, every
        later one (any worker's) compares. Checked at every decision, so that of two workers racing to
        record theirs, the one whose record was overwritten is refused at its next."""
        storage, study_id = study._storage, study._study_id
        stored = storage.get_study_user_attrs(study_id).get(DENSE)
        if stored is None:
            storage.set_study_user_attr(study_id, DENSE, self.reference)
            return
        if not isinstance(stored, Mapping) or "fingerprint" not in stored:
            raise LshError(f"LyapunovPruner: the study's user attribute {DENSE!r} is {stored!r}, not what lsh "
                           "records: the storage was changed outside lsh")
        if stored["fingerprint"] != self.reference["fingerprint"]:
            theirs = f"fingerprint {stored['fingerprint']}, {stored.get('epochs')} epochs of " \
                     f"{stored.get('exponents')} exponents, " \
                     f"{describe(stored.get('options') or {}) or 'options not carried'}"
            mine = f"fingerprint {self.reference['fingerprint']}, {self.reference['epochs']} epochs of " \
                   f"{self.exponents} exponents, {describe(self.options or {}) or 'options not carried'}"
            raise LshError(f"LyapunovPruner: study {study.study_name!r} is pruned against another dense reference "
                           f"({theirs}) than this pruner's ({mine}), or with other distance options: every worker "
                           "needs the same dense spectra and options (train the dense reference once and share it)")

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self._check_reference(study)
        trials = study.get_trials(deepcopy=False, states=COUNTED)
        started = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= self.n_startup_trials
        me = next((t for t in trials if t._trial_id == trial._trial_id), trial)  # fresh from the storage
        if PRUNED in me.user_attrs:  # asked again: the same answer
            return True
        judged = {k for k in me.user_attrs if k.startswith(DISTANCE)}
        spectra = self._spectra(me)
        if not spectra and trial.last_step is None:
            return False
        epoch = max([*spectra, trial.last_step if trial.last_step is not None else 0])
        bad = next((e for e in sorted(spectra) if any(v is None for v in spectra[e])), None)
        if bad is not None:
            self._store(study, me, PRUNED, f"the spectrum of epoch {bad} is not finite (the model diverged?)")
            for rung in self.rungs:  # it counts, as inf, at a rung it reached: a diverged candidate ranks last
                if rung in spectra and f"{DISTANCE}{rung}" not in judged:
                    self._store(study, me, f"{DISTANCE}{rung}", None)
            return True
        for rung in self.rungs:
            if rung > epoch:
                break
            if f"{DISTANCE}{rung}" in judged:  # judged at this rung already
                continue
            points = self._trajectory(me, spectra, rung, strict=True)
            if self.fit == "pool":
                distances = self._pool_distances(trials, me, points, rung)
            else:
                distances = {t.number: self._distance_of(study, t, rung) for t in trials
                             if t._trial_id != me._trial_id}
                distances[me.number] = self._pair_distance(points)
            distances = {n: d for n, d in distances.items() if d is not None}
            mine = distances[me.number]
            self._store(study, me, f"{MEASURED}{rung}", sorted(distances))
            self._store(study, me, f"{DISTANCE}{rung}", mine if math.isfinite(mine) else None)
            measured = len(distances)
            if measured < self.n_min_trials or not started:
                continue
            kept = measured - math.floor(measured * (1.0 - self.keep) + 1e-9)
            order = sorted(distances, key=lambda n: (not math.isfinite(distances[n]),
                                                     distances[n] if math.isfinite(distances[n]) else 0.0, n))
            if order.index(me.number) >= kept:
                self._store(study, me, PRUNED, f"LS distance {mine:.6g} at rung {rung}: not among the nearest "
                            f"{kept} of the {measured} trials measured there")
                return True
        return False

    def _pool_distances(self, trials: list, me: optuna.trial.FrozenTrial, points: np.ndarray,
                        rung: int) -> dict[int, float]:
        """fit `pool`: every trial measured at the rung embedded together with the dense trajectory."""
        pool = {me.number: points}
        for t in trials:
            if t._trial_id != me._trial_id:
                other = self._trajectory(t, self._spectra(t), rung, strict=False)
                if other is not None:
                    pool[t.number] = other
        return ls_distances(self.dense, {n: p if np.all(np.isfinite(p)) else None for n, p in pool.items()},
                            embedding=self.embedding, distance=self.distance, fit="pool", seed=self.random_state)

    @staticmethod
    def _store(study: optuna.study.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, key, value)


def rung_distances(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
    """A trial's LS distance at each rung the pruner judged it at (inf where its spectrum was not finite)."""
    return {int(k[len(DISTANCE):]): math.inf if v is None else float(v) for k, v in trial.user_attrs.items()
            if k.startswith(DISTANCE) and k[len(DISTANCE):].isdigit()}
