"""The LSH search: its schedule of rounds (pool sizes and epochs), known before any training.

With pool size P_r, round r trains every candidate (survivors continue for `ei` more
epochs, new candidates start from scratch and train `e0`), ranks them, removes
floor(P_r * eliminate) and, unless the survivors are already at most `final_pool`,
proposes floor(P_r * insert) new ones. P_0 = n. Because the pool sizes follow from the
params alone, the whole workflow DAG is static.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsh.errors import LshError


@dataclass(frozen=True)
class Round:
    round: int
    pool: int  # candidates trained in this round
    survivors: int  # candidates kept after its elimination
    new: int  # candidates proposed after it (trained in the next round)
    carried: int  # candidates of this round's pool that were survivors of the previous round
    epochs_carried: int  # epochs each carried candidate trains in this round (ei)
    epochs_new: int  # epochs each new candidate trains in this round (e0)
    candidate_epochs: int  # epochs trained in this round, all candidates together
    cumulative_candidate_epochs: int
    max_epoch: int  # the oldest candidate's epoch at the end of this round


@dataclass(frozen=True)
class Plan:
    rounds: tuple[Round, ...]  # empty for `search.mode: full` (no selection rounds)
    final_pool: int  # candidates trained to final.epochs

    @property
    def total_candidate_epochs(self) -> int:
        return self.rounds[-1].cumulative_candidate_epochs if self.rounds else 0

    @property
    def last_epoch(self) -> int:
        """The last epoch any candidate reaches during selection: the dense reference trains this far."""
        return self.rounds[-1].max_epoch if self.rounds else 0

    def to_dict(self) -> dict:
        return {
            "rounds": [asdict(r) for r in self.rounds],
            "total_candidate_epochs": self.total_candidate_epochs,
            "last_epoch": self.last_epoch,
            "final_pool": self.final_pool,
        }


def plan(search: dict) -> Plan:
    """The rounds that the `search` params imply; an impossible schedule is an LshError."""
    n, e0, ei = search["n"], search["e0"], search["ei"]
    if search.get("mode", "lsh") == "full":
        return Plan((), n)  # every initial candidate trains to the end; no rounds
    eliminate, insert, final_pool = search["eliminate"], search["insert"], search["final_pool"]
    if insert >= eliminate:
        raise LshError(
            f"search.insert: {insert} must be less than search.eliminate ({eliminate}), "
            "or the pool never shrinks and the rounds never stop"
        )
    if n <= final_pool:
        raise LshError(f"search.n: {n} must be greater than search.final_pool ({final_pool})")
    rounds: list[Round] = []
    pool, carried, total, max_epoch = n, 0, 0, 0
    while True:
        removed = int(pool * eliminate)
        if removed == 0:
            raise LshError(
                f"search.eliminate: {eliminate} removes no candidate from a pool of {pool}; "
                f"raise it to at least {1 / pool:.3g} or raise search.final_pool"
            )
        survivors = pool - removed
        new = 0 if survivors <= final_pool else int(pool * insert)
        epochs = carried * ei + (pool - carried) * e0
        total += epochs
        max_epoch = e0 if not rounds else max_epoch + ei
        rounds.append(Round(len(rounds), pool, survivors, new, carried, ei, e0, epochs, total, max_epoch))
        if survivors <= final_pool:
            return Plan(tuple(rounds), survivors)
        pool, carried = survivors + new, survivors


# The comparison set of the paper's Table 1 and Fig. 3 (right): one preset and seed, each
# method a full run of its own (search params overridden as given).
COMPARISON = {
    "lsh-tpe": {"mode": "lsh", "ranker": "ls", "proposer": "tpe"},
    "lsh-atpe": {"mode": "lsh", "ranker": "ls", "proposer": "atpe"},
    "lsh-grid": {"mode": "lsh", "ranker": "ls", "proposer": "grid"},
    "loss-tpe": {"mode": "lsh", "ranker": "loss", "proposer": "tpe"},
    "loss-atpe": {"mode": "lsh", "ranker": "loss", "proposer": "atpe"},
    "loss-grid": {"mode": "lsh", "ranker": "loss", "proposer": "grid"},
    "full": {"mode": "full", "ranker": "loss", "proposer": "rand"},
}


# -----------------------------------------------------------------------------
# Candidates and the search space (a hyperopt space)

CONFIG_KEYS = ("init", "death", "growth", "redistribution", "death_rate")
CATEGORICAL = CONFIG_KEYS[:4]


def candidate_id(index: int) -> str:
    return f"c{index:03d}"


def config_key(config: dict) -> tuple:
    """A hashable identity of a configuration (death rate rounded: 0.6000000000000001 is 0.6)."""
    return tuple(round(config[k], 6) if k == "death_rate" else config[k] for k in CONFIG_KEYS)


def _round_rate(value: float, space: dict) -> float:
    q = space["death_rate"]["q"]
    return round(round(value / q) * q, 6) if q else round(float(value), 6)


def hyperopt_space(space: dict) -> dict:
    """The params' `space` as hyperopt expressions, one label per configuration key."""
    from hyperopt import hp

    rate = space["death_rate"]
    out = {k: hp.choice(k, list(space[k])) for k in CATEGORICAL}
    if rate["q"]:
        out["death_rate"] = hp.quniform("death_rate", rate["low"], rate["high"], rate["q"])
    else:
        out["death_rate"] = hp.uniform("death_rate", rate["low"], rate["high"])
    return out


def config_to_vals(config: dict, space: dict) -> dict:
    """hyperopt's representation of a configuration: choice index per categorical key."""
    vals = {k: space[k].index(config[k]) for k in CATEGORICAL}
    vals["death_rate"] = float(config["death_rate"])
    return vals


def vals_to_config(vals: dict, space: dict) -> dict:
    config = {k: space[k][int(vals[k])] for k in CATEGORICAL}
    config["death_rate"] = _round_rate(vals["death_rate"], space)
    return config


def grid_points(space: dict) -> list[dict]:
    """Every methodological combination at the fixed grid death rate (2 x 4 x 3 = 24 in the paper)."""
    combos = itertools.product(*(space[k] for k in CATEGORICAL))
    return [dict(zip(CATEGORICAL, c), death_rate=space["grid_death_rate"]) for c in combos]


def _discrete_space(space: dict) -> list[dict] | None:
    """All configurations, when the death rate is quantised; None for a continuous death rate."""
    rate = space["death_rate"]
    if not rate["q"]:
        return None
    steps = int(math.floor((rate["high"] - rate["low"]) / rate["q"] + 1e-9)) + 1
    rates = [_round_rate(rate["low"] + i * rate["q"], space) for i in range(steps)]
    combos = itertools.product(*(space[k] for k in CATEGORICAL), rates)
    return [dict(zip(CONFIG_KEYS, c)) for c in combos]


def derived_seed(seed: int, *keys: int) -> int:
    """Independent, reproducible seeds for each round and attempt from the one run seed."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def history_trials(history: list[tuple[dict, float]], space: dict) -> Any:
    """A hyperopt Trials object holding finished trials: (configuration, score), lower is better."""
    from hyperopt import JOB_STATE_DONE, STATUS_OK, Trials
    from hyperopt.fmin import generate_trial

    docs = []
    for tid, (config, score) in enumerate(history):
        doc = generate_trial(tid, config_to_vals(config, space))
        doc["state"] = JOB_STATE_DONE
        doc["result"] = {"loss": float(score), "status": STATUS_OK}
        doc["book_time"] = doc["refresh_time"] = _EPOCH  # ATPE reads trial durations; ours take no time
        docs.append(doc)
    trials = Trials()
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _suggest(proposer: str, space: dict, trials: Any, seed: int) -> dict:
    """One proposal from hyperopt's algorithm through its public suggest(), which is then added to
    `trials` as a pending trial, as hyperopt's fmin does with several workers: TPE counts a pending
    trial as not (yet) good, so the next proposal moves elsewhere instead of repeating this one."""
    from hyperopt import Domain, atpe, rand, tpe

    domain = Domain(lambda cfg: 0.0, hyperopt_space(space))
    tid = len(trials.trials)
    if proposer == "tpe":
        # TPE's default 20 random start-up trials would ignore a round's history of a few candidates
        docs = tpe.suggest([tid], domain, trials, seed, n_startup_jobs=TPE_STARTUP)
    elif proposer == "atpe":
        random.seed(seed)  # ATPE draws from the global RNGs
        np.random.seed(seed % 2**32)
        docs = atpe.suggest([tid], domain, trials, seed)
    elif proposer == "rand":
        docs = rand.suggest([tid], domain, trials, seed)
    else:
        raise LshError(f"search.proposer {proposer!r}: allowed are {', '.join(PROPOSERS)}")
    doc = docs[0]
    doc["result"] = {"status": "new", "loss": None}  # pending: ATPE reads a loss key, TPE counts None as +inf
    doc["book_time"] = doc["refresh_time"] = _EPOCH
    trials.insert_trial_docs([doc])
    trials.refresh()
    vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
    return vals_to_config(vals, space)


TPE_STARTUP = 1
_EPOCH = datetime.datetime(2000, 1, 1)
PROPOSERS = ("tpe", "atpe", "rand", "grid")
FALLBACK = "fallback"  # the source of a proposal drawn at random because the algorithm kept repeating
MAX_ATTEMPTS_PER_PROPOSAL = 50


@dataclass(frozen=True)
class Proposal:
    config: dict
    source: str  # the algorithm's name, or FALLBACK


def propose(
    proposer: str, space: dict, history: list[tuple[dict, float]], tried: list[dict], k: int, seed: int
) -> list[Proposal]:
    """k configurations, distinct from each other and from everything `tried`, from the history.

    `grid` takes unused grid points in a seeded order; the others ask hyperopt, each proposal
    added to the trials as pending before the next is asked for. Only when the algorithm keeps
    proposing known configurations (a nearly exhausted space) is the rest drawn uniformly from
    the unused configurations, marked `fallback` (a quantised space can run out: then fewer
    than k come back).
    """
    seen = {config_key(c) for c in tried}
    out: list[Proposal] = []
    if proposer == "grid":
        points = grid_points(space)
        for i in np.random.default_rng(seed).permutation(len(points)):
            if len(out) == k:
                break
            if config_key(points[i]) not in seen:
                seen.add(config_key(points[i]))
                out.append(Proposal(points[i], "grid"))
        return out
    trials = history_trials(history, space)
    attempt = 0
    while len(out) < k and attempt < MAX_ATTEMPTS_PER_PROPOSAL * k:
        config = _suggest(proposer, space, trials, derived_seed(seed, attempt))
        attempt += 1
        if config_key(config) not in seen:
            seen.add(config_key(config))
            out.append(Proposal(config, proposer))
    if len(out) < k:
        unused = [c for c in (_discrete_space(space) or []) if config_key(c) not in seen]
        rng = np.random.default_rng(derived_seed(seed, 10**6))
        for i in rng.permutation(len(unused))[: k - len(out)]:
            out.append(Proposal(unused[i], FALLBACK))
    return out


# -----------------------------------------------------------------------------
# Ranking: distance to the dense reference in LS space, or validation perplexity


def _embed(points: np.ndarray, embedding: str, seed: int) -> np.ndarray:
    if embedding == "raw":
        return points
    if embedding == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=min(2, *points.shape), random_state=seed).fit_transform(points)
    if embedding == "tsne":
        from sklearn.manifold import TSNE

        perplexity = max(1.0, min(30.0, (len(points) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    raise LshError(f"search.embedding {embedding!r}: allowed are pca, raw, tsne")


def _distance(a: np.ndarray, b: np.ndarray, distance: str) -> float:
    if distance == "l2":
        return float(np.linalg.norm(a - b))
    if distance == "cosine":
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        return float(1.0 - np.dot(a, b) / norms) if norms > 0 else 1.0
    raise LshError(f"search.distance {distance!r}: allowed are l2, cosine")


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
        raise LshError(f"search.pca_fit {fit!r}: allowed are pair, pool")
    return out


def rank(scores: dict[str, float], order: list[str]) -> list[str]:
    """Candidates from best (lowest score) to worst; ties by pool order; non-finite scores last."""
    position = {c: i for i, c in enumerate(order)}
    key = lambda c: (not math.isfinite(scores[c]), scores[c] if math.isfinite(scores[c]) else 0.0, position[c])  # noqa: E731
    return sorted(scores, key=key)


# -----------------------------------------------------------------------------
# The run on disk: one folder per round and slot, so that the DAG is static

@dataclass(frozen=True)
class Layout:
    """Where a run's files live under its results folder (the Snakemake rules use the same names)."""

    root: Path

    def round_dir(self, r: int) -> Path:
        return self.root / "rounds" / f"r{r:02d}"

    def pool(self, r: int) -> Path:
        return self.round_dir(r) / "pool.json"

    def slot_train(self, r: int, s: int) -> Path:
        return self.round_dir(r) / f"s{s:02d}" / "train"

    def slot_spectra(self, r: int, s: int) -> Path:
        return self.round_dir(r) / f"s{s:02d}" / "spectra.json"

    def ranking(self, r: int) -> Path:
        return self.round_dir(r) / "ranking.csv"

    def proposals(self, r: int) -> Path:
        return self.round_dir(r) / "proposals.json"

    @property
    def final_pool(self) -> Path:
        return self.root / "final" / "pool.json"

    def final_train(self, f: int) -> Path:
        return self.root / "final" / f"f{f:02d}"

    @property
    def selected(self) -> Path:
        return self.root / "final" / "selected.json"

    @property
    def dense_train(self) -> Path:
        return self.root / "dense"

    @property
    def dense_spectra(self) -> Path:
        return self.root / "dense" / "spectra.json"


def read_json(path: Path) -> Any:
    if not Path(path).is_file():
        raise LshError(f"{path} does not exist: run the stage that makes it first")
    return json.loads(Path(path).read_text())


def _entry(slot: int, candidate: str, config: dict, parent: str | None, before: int, after: int) -> dict:
    return {"slot": slot, "candidate": candidate, "config": config, "parent": parent,
            "epochs_before": before, "epochs_after": after}


def initial_pool(params: dict) -> dict:
    """Round 0's pool (or, for `search.mode: full`, the final pool): n configurations from the proposer."""
    search, seed = params["search"], params["seed"]
    proposals = propose(search["proposer"], params["space"], [], [], search["n"], derived_seed(seed, 0))
    full = search["mode"] == "full"
    after = params["final"]["epochs"] if full else search["e0"]
    slots = [_entry(i, candidate_id(i), p.config, None, 0, after) for i, p in enumerate(proposals)]
    slots += [None] * (search["n"] - len(slots))  # a grid smaller than n leaves slots empty
    tried = [{"candidate": e["candidate"], "config": e["config"]} for e in slots if e]
    return {"round": "final" if full else 0, "slots": slots, "tried": tried, "next_id": len(tried)}


def candidate_params(params: dict, config: dict) -> dict:
    """The params a candidate trains with: the run's, its configuration in the sparse section."""
    out = copy.deepcopy(params)
    out["sparse"] = {**out["sparse"], **config}
    return out


def train_slot(params: dict, pool: dict, slot: int, out: Path, corpus: Any, *, final: bool = False,
               restart: bool = False) -> dict:
    """Train one pool slot's candidate to its epochs (continuing a survivor from its parent checkpoint)."""
    from lsh import files, training

    entry = pool["slots"][slot] if slot < len(pool["slots"]) else None
    if entry is None:
        out.mkdir(parents=True, exist_ok=True)
        summary = {"status": "empty", "epochs": 0, "epochs_trained": 0, "seconds": 0.0}
        files.write_json(out / training.SUMMARY, summary)
        return summary
    summary = training.train(
        candidate_params(params, entry["config"]), corpus, out, entry["epochs_after"], resume=True,
        restart=restart, keep="last" if final else "all", test=final, init=entry["parent"],
    )
    summary.update(candidate=entry["candidate"], config=entry["config"])
    files.write_json(out / training.SUMMARY, summary)
    return summary


def train_to_final(params: dict, pool: dict, slot: int, round_dir: Path, out: Path, corpus: Any, *,
                   restart: bool = False) -> dict:
    """Train a round-0 candidate on from its round-0 checkpoint to final.epochs (the correlation study)."""
    entry = pool["slots"][slot] if slot < len(pool["slots"]) else None
    if entry is not None:
        parent = training_checkpoint(round_dir, entry["epochs_after"])
        if not Path(parent).exists():  # it diverged before its last round-0 epoch
            entry = None
        else:
            entry = _entry(slot, entry["candidate"], entry["config"], parent, entry["epochs_after"], params["final"]["epochs"])
    return train_slot(params, {"slots": [None] * slot + [entry]}, slot, out, corpus, final=True, restart=restart)


SPECTRUM_KEYS = ("exponents", "layouts", "clipped", "status", "seconds")  # kept per epoch in spectra.json


def slot_spectra(params: dict, pool: dict, slot: int, train_dir: Path, data_dir: Path, settings: Any) -> dict:
    """Spectra of every checkpoint this slot trained (and of epoch 0 for a new candidate)."""
    from lsh import lyapunov, training

    entry = pool["slots"][slot] if slot < len(pool["slots"]) else None
    record: dict[str, Any] = {"round": pool["round"], "slot": slot, "candidate": None, "spectra": {}, "seconds": 0.0}
    if entry is None:
        record["status"] = "empty"
        return record
    record["candidate"] = entry["candidate"]
    for epoch, path in training.list_checkpoints(train_dir).items():
        if entry["parent"] and epoch <= entry["epochs_before"]:
            continue  # a survivor's earlier epochs were measured in earlier rounds
        spectrum = lyapunov.checkpoint_spectrum(path, data_dir, settings, params["seed"])
        record["spectra"][str(epoch)] = {k: spectrum[k] for k in SPECTRUM_KEYS}
        record["seconds"] += spectrum["seconds"]
    record["status"] = "ok"
    return record


def dense_spectra(params: dict, train_dir: Path, data_dir: Path, settings: Any, last_epoch: int) -> dict:
    """Spectra of the dense reference at every epoch 0..last the search compares against."""
    from lsh import lyapunov, training

    check_dense(params, train_dir, last_epoch)
    record: dict[str, Any] = {"spectra": {}, "seconds": 0.0}
    for epoch in range(last_epoch + 1):
        spectrum = lyapunov.checkpoint_spectrum(training.checkpoint_path(train_dir, epoch), data_dir, settings, params["seed"])
        record["spectra"][str(epoch)] = {k: spectrum[k] for k in SPECTRUM_KEYS}
        record["seconds"] += spectrum["seconds"]
    return record


def check_dense(params: dict, train_dir: Path, last_epoch: int) -> None:
    """Stop the search with the reason when the dense reference it compares against is unusable."""
    summary_path = Path(train_dir) / "summary.json"
    summary = read_json(summary_path)
    if summary["status"] == "diverged":
        raise LshError(
            f"the dense reference diverged at epoch {summary['epochs']} ({summary.get('reason') or 'see ' + str(summary_path)}); "
            f"the search needs it at every epoch up to {last_epoch}. The likely cause is the learning rate "
            f"(train.lr = {params['train']['lr']:g}): lower it and rerun")
    if summary["epochs"] < last_epoch:
        raise LshError(f"{summary_path}: the dense reference reached epoch {summary['epochs']}, the search compares "
                       f"against epochs up to {last_epoch}: train it that far")


def candidate_trajectories(layout: Layout, upto: int, candidates: set[str]) -> dict[str, dict[int, Any]]:
    """Each candidate's spectra by epoch, gathered over the rounds 0..upto it took part in."""
    out: dict[str, dict[int, Any]] = {c: {} for c in candidates}
    for r in range(upto + 1):
        pool = read_json(layout.pool(r))
        for s, entry in enumerate(pool["slots"]):
            if entry is None or entry["candidate"] not in candidates:
                continue
            spectra = read_json(layout.slot_spectra(r, s))["spectra"]
            for epoch, rec in spectra.items():
                out[entry["candidate"]][int(epoch)] = rec["exponents"] if rec["status"] == "ok" else None
    return out


def dense_trajectory(record: dict, upto: int, source: Path | str) -> np.ndarray:
    """The dense spectra of epochs 0..upto from a dense spectra.json, indexed by epoch (row e = epoch e)."""
    spectra = record["spectra"]
    missing = [e for e in range(upto + 1) if str(e) not in spectra]
    if missing:
        raise LshError(f"{source} has no dense spectrum of epoch {missing[0]} (the ranking needs epochs 0..{upto}): "
                       "train the dense reference and compute its spectra that far")
    rows = [spectra[str(e)]["exponents"] for e in range(upto + 1)]
    if any(r is None for r in rows):
        bad = next(e for e, r in enumerate(rows) if r is None)
        raise LshError(f"{source}: the dense spectrum of epoch {bad} failed (status {spectra[str(bad)]['status']}); "
                       "the LS ranking has no reference")
    return np.array(rows, dtype=float)


def epoch_losses(train_dir: Path) -> dict[int, float | None]:
    """Validation loss (nats per token) by epoch from a training folder's metrics.jsonl."""
    path = Path(train_dir) / "metrics.jsonl"
    if not path.is_file():
        raise LshError(f"{path} does not exist: run the training first")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["epoch"]): r.get("valid_loss") for r in records}


def loss_gaps(candidates: dict[str, tuple[int, float | None]], dense: dict[int, float | None], source: str) -> dict[str, float]:
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


def rank_round(params: dict, layout: Layout, r: int) -> pd.DataFrame:
    """Score every candidate of round r at its epoch against the dense reference at that epoch,
    rank them, and mark the survivors. `ls`: distance in LS space; `loss`: validation-loss gap."""
    search = params["search"]
    pool = read_json(layout.pool(r))
    entries = [e for e in pool["slots"] if e is not None]
    epochs = {e["candidate"]: e["epochs_after"] for e in entries}
    summaries = {e["candidate"]: read_json(layout.slot_train(r, e["slot"]) / "summary.json") for e in entries}
    losses: dict[str, float | None] = {}
    for e in entries:
        c, summary = e["candidate"], summaries[e["candidate"]]
        ok = summary["status"] == "ok" and summary["epochs"] == epochs[c]
        losses[c] = epoch_losses(layout.slot_train(r, e["slot"])).get(epochs[c]) if ok else None
    valid_ppl = {c: math.exp(v) if v is not None and v < 700 else math.inf for c, v in losses.items()}
    gaps = loss_gaps({c: (epochs[c], losses[c]) for c in epochs}, epoch_losses(layout.dense_train),
                     str(layout.dense_train / "metrics.jsonl"))

    dense = dense_trajectory(read_json(layout.dense_spectra), max(epochs.values()), layout.dense_spectra)
    spectra = candidate_trajectories(layout, r, set(epochs))
    trajectories = {}
    for c, E in epochs.items():
        points = [spectra[c].get(e) for e in range(E + 1)]
        ok = math.isfinite(valid_ppl[c]) and all(p is not None for p in points)
        trajectories[c] = np.array(points, dtype=float) if ok else None
    distance = ls_distances(dense, trajectories, embedding=search["embedding"], distance=search["distance"],
                            fit=search["pca_fit"], seed=params["seed"])
    scores = distance if search["ranker"] == "ls" else gaps
    order = rank(scores, [e["candidate"] for e in entries])
    keep = plan(search).rounds[r].survivors
    rows = []
    for position, c in enumerate(order):
        e = next(x for x in entries if x["candidate"] == c)
        rows.append({
            "round": r, "rank": position + 1, "candidate": c, "slot": e["slot"], **e["config"],
            "epoch": epochs[c], "distance": distance[c], "loss_gap": gaps[c], "valid_ppl": valid_ppl[c],
            "score": scores[c], "status": summaries[c]["status"], "kept": position < keep,
        })
    return pd.DataFrame(rows)


def read_ranking(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise LshError(f"{path} does not exist: run the round's ranking first")
    return pd.read_csv(path)


def propose_round(params: dict, layout: Layout, r: int) -> dict:
    """New candidates after round r's elimination, from the survivors' (or all) configurations and scores."""
    search, space = params["search"], params["space"]
    ranking = read_ranking(layout.ranking(r))
    rows = ranking if search["history"] == "all" else ranking[ranking["kept"]]
    history = [({k: row[k] for k in CONFIG_KEYS}, _finite_score(row["score"])) for _, row in rows.iterrows()]
    pool = read_json(layout.pool(r))
    k = plan(search).rounds[r].new
    new = propose(search["proposer"], space, history, [t["config"] for t in pool["tried"]], k,
                  derived_seed(params["seed"], r + 1))
    start = pool["next_id"]
    proposals = [{"candidate": candidate_id(start + i), "config": p.config, "source": p.source} for i, p in enumerate(new)]
    return {"round": r, "proposer": search["proposer"], "history_mode": search["history"],
            "history": [{"config": c, "score": s} for c, s in history], "proposals": proposals}


def _finite_score(score: float) -> float:
    """A diverged candidate in the history: a large but finite loss, as hyperopt needs numbers."""
    return float(score) if math.isfinite(score) else 1e12


def next_pool(params: dict, layout: Layout, r: int) -> dict:
    """Round r's pool (r >= 1) or the final pool (r = number of rounds): survivors first, then the new."""
    search = params["search"]
    prev = r - 1
    ranking = read_ranking(layout.ranking(prev))
    pool = read_json(layout.pool(prev))
    last = r == len(plan(search).rounds)
    slots: list[dict | None] = []
    for _, row in ranking[ranking["kept"]].sort_values("rank").iterrows():
        E = int(row["epoch"])
        parent = training_checkpoint(layout.slot_train(prev, int(row["slot"])), E)
        after = params["final"]["epochs"] if last else E + search["ei"]
        slots.append(_entry(len(slots), row["candidate"], {k: _plain(row[k]) for k in CONFIG_KEYS}, parent, E, after))
    tried = list(pool["tried"])
    next_id = pool["next_id"]
    if not last:
        proposals = read_json(layout.proposals(prev))["proposals"]
        for p in proposals:
            slots.append(_entry(len(slots), p["candidate"], p["config"], None, 0, search["e0"]))
        tried += [{"candidate": p["candidate"], "config": p["config"]} for p in proposals]
        next_id += len(proposals)
        slots += [None] * (plan(search).rounds[r].pool - len(slots))
    return {"round": "final" if last else r, "slots": slots, "tried": tried, "next_id": next_id}


def training_checkpoint(train_dir: Path, epoch: int) -> str:
    from lsh import training

    return str(training.checkpoint_path(train_dir, epoch))


def _plain(value: Any) -> Any:
    """numpy scalars from a CSV row as plain Python values."""
    return value.item() if hasattr(value, "item") else value


def select(params: dict, layout: Layout) -> dict:
    """The best final candidate by validation perplexity, with its history and the run's spent budget."""
    search = params["search"]
    the_plan = plan(search)
    pool = read_json(layout.final_pool)
    finals = []
    for f, entry in enumerate(pool["slots"]):
        if entry is None:
            continue
        summary = read_json(layout.final_train(f) / "summary.json")
        finals.append((entry, summary))
    finished = [(e, s) for e, s in finals if s["status"] == "ok" and s["best_valid_ppl"] is not None]
    best = min(finished, key=lambda es: (es[1]["best_valid_ppl"], es[0]["slot"])) if finished else None

    distance_history = []
    diverged = [{"candidate": e["candidate"], "where": "final", "epoch": s["epochs"], "reason": s.get("reason")}
                for e, s in finals if s["status"] == "diverged"]
    for r in range(len(the_plan.rounds)):
        ranking = read_ranking(layout.ranking(r))
        for _, row in ranking[ranking["status"] == "diverged"].iterrows():
            summary = read_json(layout.slot_train(r, int(row["slot"])) / "summary.json")
            diverged.append({"candidate": row["candidate"], "where": f"round {r}", "epoch": summary["epochs"],
                             "reason": summary.get("reason")})
        if best:
            for _, row in ranking[ranking["candidate"] == best[0]["candidate"]].iterrows():
                distance_history.append({"round": r, "epoch": int(row["epoch"]), "distance": _json_float(row["distance"]),
                                         "valid_ppl": _json_float(row["valid_ppl"]), "rank": int(row["rank"])})
    budget = spent_budget(params, layout, finals)
    if best:
        status = "ok"
    elif finals and all(s["status"] == "diverged" for _, s in finals):
        status = "every finalist diverged"
    else:
        status = "no candidate finished"
    result: dict[str, Any] = {
        "status": status,
        "mode": search["mode"], "ranker": search["ranker"], "proposer": search["proposer"],
        "density": params["sparse"]["density"],
        "candidate": best[0]["candidate"] if best else None,
        "config": best[0]["config"] if best else None,
        "valid_ppl": best[1]["best_valid_ppl"] if best else None,
        "test_ppl": best[1].get("test_ppl") if best else None,
        "best_epoch": best[1]["best_epoch"] if best else None,
        "distance_history": distance_history,
        "finalists": [{"candidate": e["candidate"], "config": e["config"], "status": s["status"],
                       "valid_ppl": s["best_valid_ppl"], "test_ppl": s.get("test_ppl")} for e, s in finals],
        "diverged": diverged,
        "budget": budget,
    }
    return result


def _json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def spent_budget(params: dict, layout: Layout, finals: list[tuple[dict, dict]]) -> dict:
    """Candidate-epochs and wall seconds actually spent, per stage, next to the planned budget."""
    the_plan = plan(params["search"])
    epochs = {"selection": 0, "final": 0}
    seconds = {"dense_training": 0.0, "dense_spectra": 0.0, "selection_training": 0.0,
               "selection_spectra": 0.0, "final_training": 0.0}
    per_round = []
    for r, rnd in enumerate(the_plan.rounds):
        pool = read_json(layout.pool(r))
        spent = 0
        for s, entry in enumerate(pool["slots"]):
            summary = read_json(layout.slot_train(r, s) / "summary.json")
            spent += summary.get("epochs_trained", 0)
            seconds["selection_training"] += summary.get("seconds", 0.0)
            if entry is not None:
                seconds["selection_spectra"] += read_json(layout.slot_spectra(r, s)).get("seconds", 0.0)
        epochs["selection"] += spent
        per_round.append({"round": r, "pool": rnd.pool, "planned_candidate_epochs": rnd.candidate_epochs,
                          "spent_candidate_epochs": spent})
    for _, summary in finals:
        epochs["final"] += summary.get("epochs_trained", 0)
        seconds["final_training"] += summary.get("seconds", 0.0)
    if the_plan.rounds:
        dense = read_json(layout.dense_train / "summary.json")
        seconds["dense_training"] = dense.get("seconds", 0.0)
        seconds["dense_spectra"] = read_json(layout.dense_spectra).get("seconds", 0.0)
    return {
        "planned_selection_candidate_epochs": the_plan.total_candidate_epochs,
        "candidate_epochs": epochs,
        "total_candidate_epochs": epochs["selection"] + epochs["final"],
        "wall_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "total_wall_seconds": round(sum(seconds.values()), 3),
        "rounds": per_round,
    }
