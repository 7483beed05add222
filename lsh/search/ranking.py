"""Ranking: a candidate's distance to the dense reference at its own epoch, in LS space (the
LSH ranker) or in validation loss (the loss-based baselines), and the order it gives.

EMBEDDINGS and DISTANCES map the params' `search.embedding` and `search.distance` to
functions. Everything here works on arrays handed to it; the ranking stage reads the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsh.errors import LshError
from lsh.spectrum_options import check_alike, options_of


def embed_pca(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D PCA (the paper's LS space)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=min(2, *points.shape), random_state=seed).fit_transform(points)


def embed_raw(points: np.ndarray, seed: int) -> np.ndarray:
    """The spectra themselves."""
    return points


def embed_tsne(points: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE (keeps neighbourhoods, not distances)."""
    from sklearn.manifold import TSNE

    perplexity = max(1.0, min(30.0, (len(points) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


EMBEDDINGS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "pca": embed_pca, "raw": embed_raw, "tsne": embed_tsne,
}


def distance_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def distance_cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(1.0 - np.dot(a, b) / norms) if norms > 0 else 1.0


DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"l2": distance_l2, "cosine": distance_cosine}
PCA_FITS = ("pair", "pool")


def _embed(points: np.ndarray, embedding: str, seed: int) -> np.ndarray:
    if embedding not in EMBEDDINGS:
        raise LshError(f"search.embedding {embedding!r}: allowed are {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[embedding](points, seed)


def _distance(a: np.ndarray, b: np.ndarray, distance: str) -> float:
    if distance not in DISTANCES:
        raise LshError(f"search.distance {distance!r}: allowed are {', '.join(DISTANCES)}")
    return DISTANCES[distance](a, b)


def ls_distances(
    dense: np.ndarray, candidates: dict[str, np.ndarray | None], *, embedding: str = "pca",
    distance: str = "l2", fit: str = "pair", seed: int = 0,
) -> dict[str, float]:
    """Distance of each candidate to the dense reference in LS space, at the candidate's epoch E.

    dense: [epochs, L], the dense spectra of epochs 0, 1, ...; candidates: id -> [E + 1, L],
    the candidate's spectra of epochs 0..E (None when it diverged: distance inf). `fit`
    `pair` embeds the dense and this candidate's trajectories over 0..E (the paper's
    formula); `pool` embeds the dense trajectory and all candidates' together.
    """
    out = {c: math.inf for c, t in candidates.items() if t is None or not np.all(np.isfinite(t))}
    valid = {c: t for c, t in candidates.items() if c not in out}
    for c, t in valid.items():
        if len(t) > len(dense):
            raise LshError(f"candidate {c} is at epoch {len(t) - 1}, but the dense reference has spectra of epochs "
                           f"0..{len(dense) - 1} only: train the dense reference to at least epoch {len(t) - 1}")
    if fit == "pool" and valid:
        last = max(len(t) for t in valid.values())
        points = np.concatenate([dense[:last], *valid.values()])
        emb = _embed(points, embedding, seed)
        dense_emb, start = emb[:last], last
        for c, t in valid.items():
            cand_emb = emb[start : start + len(t)]
            start += len(t)
            out[c] = _distance(dense_emb[len(t) - 1], cand_emb[-1], distance)
    elif fit == "pair":
        for c, t in valid.items():
            E = len(t)
            emb = _embed(np.concatenate([dense[:E], t]), embedding, seed)
            out[c] = _distance(emb[E - 1], emb[-1], distance)
    elif valid:
        raise LshError(f"search.pca_fit {fit!r}: allowed are {', '.join(PCA_FITS)}")
    return out


RANKERS = ("ls", "loss", "loss_gap", "tse")
RANKER_LABELS = {"ls": "LSH", "loss": "loss", "loss_gap": "loss-gap", "tse": "TSE"}  # a search's name's first part
AGES = ("own", "common")
FULL_TRAINING = "full-training"  # the search that trains every candidate to the end: no ranker


def method_name(ranker: str, proposer: str, *, full: bool = False, age: str = "own") -> str:
    """A search's name in every table, a run's report and the study's alike: the ranker's label (or
    full-training: every candidate trained to the end), the proposer, and the age when it is not the paper's:
    LSH-tpe, loss-grid, TSE-rand common-age, full-training-tpe."""
    prefix = FULL_TRAINING if full else RANKER_LABELS.get(ranker, str(ranker))
    return f"{prefix}-{proposer}" + (" common-age" if age == "common" and not full else "")


@dataclass(frozen=True, kw_only=True)
class Observed:
    """What a round can see of a candidate trained to `epoch`: its losses by epoch (1..epoch, None
    where it diverged) and its spectra of epochs 0..epoch (None: it diverged)."""

    epoch: int
    valid_loss: Mapping[int, float | None]
    train_loss: Mapping[int, float | None]
    spectra: np.ndarray | None


def scored_epochs(epochs: Mapping[str, int], age: str) -> dict[str, int]:
    """The epoch each candidate is scored at. `own`: its own (the paper; a pool mixes survivors and
    newcomers, and every signal drifts with age). `common`: the pool's youngest epoch for everyone,
    whose losses and spectra every survivor kept, so that all are compared at the same age."""
    if age not in AGES:
        raise LshError(f"search.age {age!r}: allowed are {', '.join(AGES)}")
    common = min(epochs.values(), default=0)
    return {c: e if age == "own" else common for c, e in epochs.items()}


def round_scores(ranker: str, age: str, observed: Mapping[str, Observed], dense_loss: Mapping[int, float | None],
                 dense_spectra: np.ndarray, *, embedding: str = "pca", distance: str = "l2", fit: str = "pair",
                 seed: int = 0, source: str = "the dense reference") -> dict[str, float]:
    """Each candidate's score (lower is better) under `ranker`: `ls` the LS distance to the dense
    reference, `loss` the validation loss (the paper's loss baseline), `loss_gap` the validation loss
    minus the dense model's at the same epoch, `tse` the sum of training losses of epochs 1..E
    (training speed estimation, Ru et al. 2021), each at the epoch `age` gives. A candidate that
    diverged by its own epoch scores inf."""
    if ranker not in RANKERS:
        raise LshError(f"search.ranker {ranker!r}: allowed are {', '.join(RANKERS)}")
    at = scored_epochs({c: o.epoch for c, o in observed.items()}, age)
    alive = {c: o for c, o in observed.items() if _finite(o.valid_loss.get(o.epoch))}
    out = {c: math.inf for c in observed if c not in alive}
    if ranker == "ls":
        trajectories = {c: None if o.spectra is None else o.spectra[: at[c] + 1] for c, o in alive.items()}
        return {**out, **ls_distances(dense_spectra, trajectories, embedding=embedding, distance=distance, fit=fit,
                                      seed=seed)}
    if ranker == "loss_gap":
        return {**out, **loss_gaps({c: (at[c], o.valid_loss.get(at[c])) for c, o in alive.items()}, dense_loss, source)}
    for c, o in alive.items():
        if ranker == "loss":
            value = o.valid_loss.get(at[c]) if at[c] > 0 else None
        else:
            terms = [o.train_loss.get(e) for e in range(1, at[c] + 1)]
            value = sum(terms) if terms and all(map(_finite, terms)) else None
        out[c] = float(value) if _finite(value) else math.inf
    return out


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def rank(scores: dict[str, float], order: list[str]) -> list[str]:
    """Candidates from best (lowest score) to worst; ties by pool order; non-finite scores last."""
    position = {c: i for i, c in enumerate(order)}
    key = lambda c: (not math.isfinite(scores[c]), scores[c] if math.isfinite(scores[c]) else 0.0, position[c])  # noqa: E731
    return sorted(scores, key=key)




def loss_gaps(candidates: dict[str, tuple[int, float | None]], dense: dict[int, float | None],
              source: str) -> dict[str, float]:
    """The loss-based distance: a candidate's validation loss minus the dense reference's at the same
    epoch (candidates: id -> (epoch, loss or None when diverged)). Comparing each candidate with the
    dense model at its own epoch, as the LS ranker does, lets a new candidate at e0 compete fairly
    with a survivor several epochs further on."""
    out = {}
    for c, (epoch, loss) in candidates.items():
        if epoch not in dense or dense[epoch] is None:
            raise LshError(f"{source} has no validation loss of epoch {epoch} (candidate {c} is at that epoch): "
                           "train the dense reference that far")
        out[c] = loss - dense[epoch] if loss is not None and math.isfinite(loss) else math.inf
    return out


def dense_trajectory(spectra: Mapping[int, Any], upto: int, source: str, layout: str | None = None) -> np.ndarray:
    """The dense spectra of epochs 0..upto (epoch -> a spectrum record with `exponents`, `layouts`
    and `status`), indexed by epoch (row e = epoch e), in their own layout or in `layout`."""
    missing = [e for e in range(upto + 1) if e not in spectra]
    if missing:
        raise LshError(f"{source} has no dense spectrum of epoch {missing[0]} (the ranking needs epochs 0..{upto}): "
                       "train the dense reference and compute its spectra that far")
    records = [spectra[e] for e in range(upto + 1)]
    bad = next((e for e, r in enumerate(records) if r.exponents is None), None)
    if bad is not None:
        raise LshError(f"{source}: the dense spectrum of epoch {bad} failed (status {records[bad].status}); "
                       "the LS ranking has no reference")
    return np.array([r.exponents if layout is None else r.layouts[layout] for r in records], dtype=float)

def _spectra_matrix(value: Any, what: str) -> np.ndarray:
    """A spectra argument (numpy array, torch tensor or nested list) as a float array [epochs, L]."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        points = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise LshError(f"{what}: expected spectra as an array [epochs, exponents] of numbers ({e})") from None
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] == 0:
        raise LshError(f"{what}: expected spectra as an array [epochs, exponents] (row e: the spectrum of epoch e), "
                       f"got shape {tuple(points.shape)}")
    return points


def ls_distance(dense: Any, candidate: Any, *, embedding: str = "pca", distance: str = "l2", fit: str = "pair",
                seed: int = 0) -> float:
    """A candidate's distance to the dense reference in LS space at the candidate's epoch E, by the very
    code the pipeline ranks with (ls_distances).

    dense: [E' + 1, L], the dense reference's spectra of epochs 0..E' (row e: epoch e, epoch 0 the
    initialisation); candidate: [E + 1, L], the candidate's spectra of epochs 0..E, E <= E'. Numpy arrays,
    torch tensors or lists. `embedding` (pca | raw | tsne), `distance` (l2 | cosine) and `fit` (pair: the
    dense and this candidate's trajectories over 0..E are embedded together, the paper's formula; pool
    is the same for one candidate) as in the params' search section. Shapes that do not match, spectra
    that are not finite, and spectra carrying different options (lsh.spectrum_options: tensors from
    lsh.module_spectrum, or lists of them) are an LshError naming them.
    """
    check_alike(options_of(dense, "ls_distance: dense"), options_of(candidate, "ls_distance: candidate"),
                "ls_distance", ("dense", "candidate"))
    d, c = _spectra_matrix(dense, "ls_distance: dense"), _spectra_matrix(candidate, "ls_distance: candidate")
    if d.shape[1] != c.shape[1]:
        raise LshError(f"ls_distance: the dense spectra (shape {d.shape}) have {d.shape[1]} exponents but the "
                       f"candidate's (shape {c.shape}) have {c.shape[1]}: compare spectra of the same length")
    if len(c) > len(d):
        raise LshError(f"ls_distance: the candidate's spectra (shape {c.shape}) reach epoch {len(c) - 1} but the dense "
                       f"reference's (shape {d.shape}) only epoch {len(d) - 1}: the dense reference needs epochs "
                       f"0..{len(c) - 1}")
    for what, points in (("dense", d), ("candidate", c)):
        if not np.all(np.isfinite(points)):
            epoch = int(np.argwhere(~np.isfinite(points))[0, 0])
            raise LshError(f"ls_distance: the {what} spectrum of epoch {epoch} is not finite (shape {points.shape}): "
                           "a model that diverged has no LS distance")
    return ls_distances(d, {"candidate": c}, embedding=embedding, distance=distance, fit=fit, seed=seed)["candidate"]
