"""lsh.dense_spectra: the dense reference's spectra by epoch from a model's checkpoints, measured as a trial's are."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lsh
from lsh.errors import LshError


class Tiny(nn.Module):
    """A user's language model: the spectrum is of its LSTM, driven by its own embedding of the probe."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(12, 5)
        self.lstm = nn.LSTM(5, 4, num_layers=2)


def checkpoints(epochs: int = 3) -> tuple[Tiny, list[dict]]:
    """A model and its state dicts of epochs 0..epochs - 1, each a small step away from the last."""
    torch.manual_seed(0)
    model, states = Tiny(), []
    for _ in range(epochs):
        states.append(copy.deepcopy(model.state_dict()))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model, states


# token ids [T, K]: 21 steps after a warm-up of 1, enough not to warn
PROBE = torch.arange(44).remainder(12).view(22, 2)


def measure(model: Tiny) -> tuple[nn.Module, torch.Tensor]:
    return model.lstm, model.embedding(PROBE)


def test_the_spectra_are_module_spectrum_of_each_checkpoint_loaded_and_carry_its_options(tmp_path):
    model, states = checkpoints()
    before = copy.deepcopy(model.state_dict())
    expected = {}
    for epoch, state in enumerate(states):
        loaded = Tiny()
        loaded.load_state_dict(state)
        with torch.no_grad():
            expected[epoch] = lsh.module_spectrum(loaded.lstm, loaded.embedding(PROBE), warmup=1)
    spectra = lsh.dense_spectra(model, states, measure, warmup=1)
    assert list(spectra) == [0, 1, 2]
    for epoch in spectra:  # the same function on the same weights: the same bits
        assert torch.equal(spectra[epoch], expected[epoch]), epoch
        assert spectra[epoch].lsh_options == expected[epoch].lsh_options
    assert not torch.equal(spectra[0], spectra[2]), "each checkpoint's own weights were measured"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the model itself is left as it was"
    # files torch.save wrote (a bare state dict, or one under "model"), in a mapping epoch -> file
    files = {}
    for epoch, state in enumerate(states):
        files[epoch] = tmp_path / f"epoch-{epoch}.pt"
        torch.save(state if epoch % 2 else {"model": state, "epoch": epoch}, files[epoch])
    from_files = lsh.dense_spectra(model, files, measure, warmup=1)
    assert all(torch.equal(from_files[e], spectra[e]) for e in spectra)
    # a probe tensor measures the model itself (here an nn.LSTM saved alone)
    lstm_states = [{k[len("lstm."):]: v for k, v in s.items() if k.startswith("lstm.")} for s in states]
    inputs = torch.randn(22, 2, 5, dtype=torch.float64)
    direct = lsh.dense_spectra(model.lstm, lstm_states, inputs)
    lstm = copy.deepcopy(model.lstm)
    lstm.load_state_dict(lstm_states[1])
    assert torch.equal(direct[1], lsh.module_spectrum(lstm, inputs))


def test_the_pruner_takes_the_spectra_and_refuses_a_trial_measured_otherwise():
    import optuna

    model, states = checkpoints()
    pruner = lsh.LyapunovPruner(lsh.dense_spectra(model, states, measure), rungs=[2])
    assert pruner.options["log_base"] == "e" and pruner.exponents == 8
    study = optuna.create_study(pruner=pruner)
    loaded = Tiny()
    loaded.load_state_dict(states[0])
    with torch.no_grad():
        lsh.report_spectrum(study.ask(), lsh.module_spectrum(loaded.lstm, loaded.embedding(PROBE)), 0)
        with pytest.raises(LshError, match="they differ in log_base"):
            lsh.report_spectrum(study.ask(), lsh.module_spectrum(loaded.lstm, loaded.embedding(PROBE), log_base=2), 0)


@pytest.mark.parametrize("make, words", [
    (lambda s, p: {0: s[0], 2: s[2]}, "no checkpoint of epoch 1 \\(the dense reference needs every epoch from 0"),
    (lambda s, p: [], "no checkpoint of epoch 0"),
    (lambda s, p: "epoch-0.pt", "checkpoints is a str; expected a list"),
    (lambda s, p: [s[0], p / "missing.pt"], "the checkpoint of epoch 1, .*missing.pt, does not exist"),
    (lambda s, p: [s[0], p / "junk.pt"], "the checkpoint of epoch 1, .*junk.pt, cannot be read as weights"),
    (lambda s, p: [s[0], {"lstm.weight": torch.zeros(2)}], "the checkpoint of epoch 1 does not fit the model"),
    (lambda s, p: [s[0], 3], "the checkpoint of epoch 1 is a int; expected a state dict"),
])
def test_checkpoints_that_cannot_make_a_dense_reference_are_refused_naming_the_epoch(make, words, tmp_path):
    model, states = checkpoints()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LshError, match=words):
        lsh.dense_spectra(model, make(states, tmp_path), measure)


def test_a_probe_function_must_return_the_module_and_its_inputs():
    model, states = checkpoints()
    with pytest.raises(LshError,
                       match="probe\\(model\\) returned a Tensor; expected \\(the recurrent module, its inputs\\)"):
        lsh.dense_spectra(model, states, lambda m: m.embedding(PROBE))
