"""Hyperpruning your own LSTM language model with Optuna and the Lyapunov pruner.

A plain PyTorch model (embedding + nn.LSTM + linear decoder) and its training loop, nothing of the
`lsh` pipeline but three calls:

1. a dense model is trained first, keeping its weights of every epoch (0: the initialisation); their
   Lyapunov spectra are the reference: `lsh.dense_spectra(model, checkpoints, probe)`, each the
   `lsh.module_spectrum(model.lstm, model.embedding(probe))` of one epoch's weights;
2. `lsh.LyapunovPruner(dense_spectra)` prunes, at epochs 2, 4, ..., the trials whose spectra have
   drifted farther from the dense model's than the nearer half of the trials measured there;
3. each trial reports its validation loss (`trial.report`) and its spectrum
   (`lsh.report_spectrum`) every epoch.

Every trial's LS distance at every rung is printed as it ends.

Optuna searches the learning rate, the dropout and the fraction of the LSTM's weights removed by
magnitude pruning (a mask kept through training). The corpus is made up here (a random Markov chain
of words, so there is structure to learn) unless --ptb names a folder with PTB's ptb.train.txt and
ptb.valid.txt (or .gz); --tokens takes a slice of it.

    python examples/lstm_optuna_lyapunov.py                      # about a minute on a CPU
    python examples/lstm_optuna_lyapunov.py --trials 6 --epochs 4 --hidden 16 --tokens 4000   # tiny
    python examples/lstm_optuna_lyapunov.py --ptb data/ptb --tokens 200000 --hidden 128

Several workers share one study through a storage: create the study once, then start the workers
side by side, each with its own --worker number (its sampler's seed) and the same --seed (the same
corpus, and the same dense reference, which each trains alike; the pruner refuses a worker whose
dense reference differs):

    optuna create-study --storage sqlite:///search.db --study-name lstm-lyapunov
    python examples/lstm_optuna_lyapunov.py --storage sqlite:///search.db --worker 0 &
    python examples/lstm_optuna_lyapunov.py --storage sqlite:///search.db --worker 1 &
"""

from __future__ import annotations

import argparse
import copy
import gzip
import time
from pathlib import Path

import optuna
import sqlalchemy.exc
import torch
from torch import nn

import lsh
from lsh.pruner import rung_distances

# --- the data -------------------------------------------------------------------------------------


def made_up_corpus(tokens: int, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    """`tokens` word ids from a Markov chain in which each word is followed by one of 3 others."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.randint(vocab, (vocab, 3), generator=g)
    choice = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), tokens, replacement=True, generator=g)
    words = [0]
    for c in choice[1:].tolist():
        words.append(int(successors[words[-1], c]))
    return torch.tensor(words)


def read_ptb(folder: Path, split: str, tokens: int, vocabulary: dict[str, int]) -> torch.Tensor:
    """The first `tokens` words of PTB's split (one <eos> per line), as ids in `vocabulary` (grown here)."""
    path = folder / f"ptb.{split}.txt"
    text = path.read_text() if path.exists() else gzip.open(f"{path}.gz", "rt").read()
    words = [w for line in text.splitlines() for w in (*line.split(), "<eos>")][:tokens]
    return torch.tensor([vocabulary.setdefault(w, len(vocabulary)) for w in words])


def batches(data: torch.Tensor, batch: int = 16, steps: int = 35):
    """(inputs, targets) of [batch, steps] each: the data as `batch` parallel streams, cut every `steps`."""
    streams = data[: len(data) // batch * batch].view(batch, -1)
    for i in range(0, streams.shape[1] - 1, steps):
        chunk = streams[:, i : i + steps + 1]
        yield chunk[:, :-1], chunk[:, 1:]


# --- the model and its training ---------------------------------------------------------------------


class LanguageModel(nn.Module):
    def __init__(self, vocab: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.drop(self.embedding(tokens)))
        return self.decoder(self.drop(out))


def magnitude_masks(lstm: nn.LSTM, fraction: float) -> dict[str, torch.Tensor]:
    """Keep the largest (1 - fraction) of each LSTM weight matrix by magnitude."""
    masks = {}
    for name, weight in lstm.named_parameters():
        if name.startswith("weight") and fraction > 0:
            threshold = weight.detach().abs().flatten().kthvalue(max(1, int(fraction * weight.numel()))).values
            masks[name] = (weight.detach().abs() > threshold).float()
    return masks


def apply_masks(lstm: nn.LSTM, masks: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, mask in masks.items():
            getattr(lstm, name).mul_(mask)


def validation_loss(model: LanguageModel, data: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches(data)]
    return sum(losses) / len(losses)


def measured(model: LanguageModel, probe: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """What the spectrum is of: the LSTM, driven by the embedded probe sequences [K, T] (batch first)."""
    return model.lstm, model.embedding(probe)


def spectrum(model: LanguageModel, probe: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lsh.module_spectrum(*measured(model, probe))


def train(model: LanguageModel, lr: float, epochs: int, masks: dict, train_data: torch.Tensor,
          valid_data: torch.Tensor):
    """Yield (epoch, validation loss) at epoch 0 (no loss yet: None) and after every epoch."""
    apply_masks(model.lstm, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    yield 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in batches(train_data):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            apply_masks(model.lstm, masks)  # pruned weights stay pruned
        yield epoch, validation_loss(model, valid_data)


# --- the study ---------------------------------------------------------------------------------------


def shared_study(name: str, storage: str | None, sampler: optuna.samplers.BaseSampler,
                 pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """The study, created by the first worker that gets there: two workers creating one SQLite study at
    the same moment race (one of them fails to create its tables); the loser waits and loads it."""
    def create() -> optuna.Study:
        return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, sampler=sampler,
                                   pruner=pruner)

    for attempt in range(9):
        try:
            return create()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            time.sleep(0.2 * (attempt + 1))
    return create()  # the last try: its error, if any, is the user's to see


def describe(trial: optuna.trial.FrozenTrial, rungs: list[int]) -> str:
    """One line: the trial's settings, its LS distance at every rung it reached, and how it ended."""
    settings = f"lr {trial.params['lr']:.4f}, dropout {trial.params['dropout']:.2f}, prune {trial.params['prune']}"
    reached = rung_distances(trial)
    distances = ", ".join(f"rung {r}: {reached[r]:.3f}" if r in reached else f"rung {r}: -" for r in rungs)
    if trial.state == optuna.trial.TrialState.PRUNED:
        end = f"pruned after epoch {trial.last_step}: {trial.user_attrs['lsh_pruned']}"
    else:
        end = f"finished, validation loss {trial.value:.3f}"
    return f"trial {trial.number} ({settings}) | LS distance {distances} | {end}"


# --- the search ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="Optuna trials")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial (and of the dense model)")
    parser.add_argument("--hidden", type=int, default=64, help="embedding and LSTM size")
    parser.add_argument("--tokens", type=int, default=40000, help="training tokens (a tenth as many to validate)")
    parser.add_argument("--ptb", type=Path, help="a folder with PTB's ptb.train.txt and ptb.valid.txt (or .gz)")
    parser.add_argument("--storage", help="an Optuna storage URL shared by several workers (sqlite:///search.db)")
    parser.add_argument("--seed", type=int, default=0, help="the corpus, the dense reference and the models' seed "
                        "(every worker the same)")
    parser.add_argument("--worker", type=int, default=0,
                        help="this worker's number: its sampler's seed is seed + worker")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.ptb:
        vocabulary: dict[str, int] = {}
        train_data = read_ptb(args.ptb, "train", args.tokens, vocabulary)
        valid_data = read_ptb(args.ptb, "valid", max(args.tokens // 10, 1000), vocabulary)
        vocab = len(vocabulary)
    else:
        corpus, vocab = made_up_corpus(args.tokens + max(args.tokens // 10, 1000), seed=args.seed), 50
        train_data, valid_data = corpus[: args.tokens], corpus[args.tokens :]
    probe = valid_data[: 4 * 50].view(4, 50)  # 4 validation sequences of 50 tokens drive the spectra

    # 1. The dense reference: its weights at every epoch, and their spectra.
    torch.manual_seed(args.seed)
    dense = LanguageModel(vocab, args.hidden, dropout=0.0)
    checkpoints = []
    for epoch, loss in train(dense, 3e-3, args.epochs, {}, train_data, valid_data):
        checkpoints.append(copy.deepcopy(dense.state_dict()))
        if loss is not None:
            print(f"dense reference, epoch {epoch}: validation loss {loss:.3f}")
    dense_spectra = lsh.dense_spectra(dense, checkpoints, lambda model: measured(model, probe))

    # 2. The search, pruned by the LS distance to the dense reference at epochs 2, 4, ...
    pruner = lsh.LyapunovPruner(dense_spectra)
    sampler = optuna.samplers.TPESampler(seed=args.seed + args.worker)
    study = shared_study("lstm-lyapunov", args.storage, sampler, pruner)
    print(f"rungs (epochs at which trials are compared): {pruner.rungs}")
    print("An LS distance is how far a trial's spectra of epochs 0..rung lie from the dense model's, in a PCA of\n"
          "both trajectories (nats per step). An exponent at the floor (-16: a direction the pruned weights\n"
          "killed) is far from any the dense model has, so a trial that loses a few directions is far off.\n"
          f"No trial is pruned at a rung before {pruner.n_min_trials} trials were measured there: the first never is.")

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        fraction = trial.suggest_categorical("prune", [0.0, 0.5, 0.8, 0.95])
        torch.manual_seed(args.seed + 1 + trial.number)
        model = LanguageModel(vocab, args.hidden, dropout)
        masks = magnitude_masks(model.lstm, fraction)
        for epoch, loss in train(model, lr, args.epochs, masks, train_data, valid_data):
            lsh.report_spectrum(trial, spectrum(model, probe), epoch)  # 3. the spectrum, beside the loss
            if epoch > 0:
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return loss

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(describe(trial, pruner.rungs), flush=True)

    study.optimize(objective, n_trials=args.trials, callbacks=[report])

    pruned = study.get_trials(states=[optuna.trial.TrialState.PRUNED])
    print(f"\npruned trials: {', '.join(str(t.number) for t in pruned) or 'none'}")
    best = study.best_trial
    print(f"best trial: {best.number}, validation loss {best.value:.3f}, "
          f"lr {best.params['lr']:.4f}, dropout {best.params['dropout']:.2f}, prune {best.params['prune']}")


if __name__ == "__main__":
    main()
