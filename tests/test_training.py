"""Training: the loop learns, resumes bitwise exactly, switches to NT-ASGD on time, fails cleanly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_lsh, synthetic_corpus
from precision import EPS64, accumulated

from lsh import config, data, training
from lsh.config import Params
from lsh.errors import LshError
from lsh.models import ModelConfig, build_model
from lsh.training import RunSpec, candidate_spec, dense_spec

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"


def tiny_params(**sets: object) -> RunSpec:
    """A small dense model on the smoke preset's training settings (sparse training has its own tests)."""
    overrides = [
        "model.emb=16", "model.hidden=16", "train.eval_tokens=4000", "train.batch_size=10",
        *(f"{k}={json.dumps(v)}" for k, v in sets.items()),
    ]
    return dense_spec(Params.from_dict(config.load_params(SMOKE, overrides)))


def trainer_of(spec: RunSpec, corpus: data.Corpus) -> training.Trainer:
    return training.build_trainer(spec, corpus, torch.device("cpu"))


@pytest.fixture(scope="module")
def corpus(ptb_quick_small: Path) -> data.Corpus:
    full = data.load_corpus(ptb_quick_small)
    return data.Corpus(train=full.train, valid=full.valid, test=full.test[:5_000], vocab=full.vocab)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return training.load_checkpoint(path)["model"]


def test_batchify_cuts_parallel_streams_in_order():
    import numpy as np

    b = training.batchify(np.arange(10), 3, torch.device("cpu"))
    assert b.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_untrained_model_perplexity_is_near_the_vocabulary_size(corpus):
    spec = tiny_params()
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_params(spec.model, corpus.vocab_size))
    valid = training.batchify(corpus.valid[:5000], 10, torch.device("cpu"))
    ppl = training.perplexity(training.evaluate(model, valid, 35))
    assert 0.7 * corpus.vocab_size < ppl < 1.3 * corpus.vocab_size


def test_one_short_epoch_lowers_validation_perplexity(corpus, tmp_path):
    summary = training.train(tiny_params(), corpus, tmp_path, 1)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert summary.status == "ok"
    untrained = training.perplexity(
        training.evaluate(
            training.model_from_checkpoint(training.load_checkpoint(tmp_path / "epoch-000.pt")),
            training.batchify(corpus.valid[:4000], 10, torch.device("cpu")), 35,
        )
    )
    assert first["valid_ppl"] < 0.5 * untrained


def test_checkpoint_for_every_epoch_including_the_initialisation(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt"]
    state = torch.load(tmp_path / "epoch-002.pt", weights_only=True)
    assert {"model", "optimizer", "averaging", "rng", "epoch", "history", "model_config"} <= set(state)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_is_bitwise_equal_to_one_uninterrupted_run(corpus, tmp_path):
    params = tiny_params()
    training.train(params, corpus, tmp_path / "once", 4)
    training.train(params, corpus, tmp_path / "twice", 2)
    training.train(params, corpus, tmp_path / "twice", 4, resume=True)
    a, b = weights(tmp_path / "once" / "epoch-004.pt"), weights(tmp_path / "twice" / "epoch-004.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (tmp_path / "once" / "metrics.jsonl").read_text().count("\n") == 4
    once = [json.loads(x)["valid_loss"] for x in (tmp_path / "once" / "metrics.jsonl").read_text().splitlines()]
    twice = [json.loads(x)["valid_loss"] for x in (tmp_path / "twice" / "metrics.jsonl").read_text().splitlines()]
    assert once == twice


def test_resume_is_exact_while_averaging(corpus, tmp_path):
    """Averaged weights, counters and raw weights all travel in the checkpoint."""
    params = tiny_params()

    def trainer() -> training.Trainer:
        return trainer_of(params, corpus)

    one = trainer()
    one.run_epoch(False)
    one.averager.start(one.model)
    one.run_epoch(False)
    state = one.state_dict(params.run_config(corpus))
    path = tmp_path / "ckpt.pt"
    training.save_checkpoint(path, state)
    one.run_epoch(False)

    two = trainer()
    two.load_state_dict(training.load_checkpoint(path))
    two.run_epoch(False)
    assert two.averager.active
    for name, p in one.model.named_parameters():
        assert torch.equal(p, dict(two.model.named_parameters())[name]), name
        assert torch.equal(one.averager.avg[name], two.averager.avg[name]), name
    timing = ("seconds", "tokens_per_s")
    strip = lambda history: [{k: v for k, v in h.items() if k not in timing} for h in history]  # noqa: E731
    assert strip(one.history) == strip(two.history)


def test_nt_asgd_trigger_fires_only_after_nonmono_epochs_without_progress():
    losses = [5.0, 4.0, 3.0, 2.9, 2.8, 2.7, 2.75, 2.95, 3.05]
    fired = [i for i in range(len(losses)) if training.should_switch_to_asgd(losses[:i], losses[i], 5)]
    # at i = 6: 2.75 is not worse than min(losses[:1]) = 5.0; at i = 8: 3.05 > min(losses[:3]) = 3.0
    assert fired[0] == 8
    assert not training.should_switch_to_asgd([1.0] * 5, 9.0, 5), "needs more than nonmono earlier losses"
    assert training.should_switch_to_asgd([1.0] * 6, 1.01, 5)


def test_trainer_switches_to_averaging_on_a_scripted_loss_sequence(corpus, monkeypatch):
    # nonmono 2: epoch 3's 6.0 is worse than all, but only 2 losses precede it; epoch 4's 5.5 > 5.0
    scripted = iter([5.0, 4.0, 6.0, 5.5, 4.1])
    monkeypatch.setattr(training.loop, "evaluate", lambda model, source, bptt: next(scripted))
    params = tiny_params(**{"train.nonmono": 2})
    t = trainer_of(params, data.Corpus(train=corpus.train[:2000], valid=corpus.valid, test=corpus.test,
                                       vocab=corpus.vocab))
    active = []
    for _ in range(5):
        t.run_epoch(False)
        active.append(t.averager.active)
    assert active == [False, False, False, True, True]
    assert [h["averaging"] for h in t.history] == [False, False, False, False, True]


def test_averaged_weights_follow_asgd(corpus):
    """mu = 1 for the first two steps, then 1 / (step - 1): the mean of weights from step 2 on."""
    model = torch.nn.Linear(2, 1, bias=False)
    avg = training.Averager()
    avg.start(model)
    seen = []
    for k in range(5):
        with torch.no_grad():
            model.weight.fill_(float(k + 1))
        avg.update(model)
        seen.append(float(k + 1))
    assert avg.avg["weight"].tolist() == [[sum(seen[1:]) / 4] * 2]


def test_keep_last_keeps_only_the_last_and_best_epochs(corpus, tmp_path):
    summary = training.train(tiny_params(), corpus, tmp_path, 3, keep="last")
    kept = {training.checkpoint_path(tmp_path, e).name for e in (3, summary.best_epoch)}
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == sorted(kept)


def test_corrupted_checkpoint_is_an_error_naming_the_file(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 1)
    path = tmp_path / "epoch-001.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LshError, match=f"checkpoint {path} is truncated or corrupted"):
        training.train(tiny_params(), corpus, tmp_path, 2, resume=True)


def test_existing_checkpoints_without_resume_are_not_overwritten(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 1)
    with pytest.raises(LshError, match="pass --resume"):
        training.train(tiny_params(), corpus, tmp_path, 2)


def test_resume_with_other_params_is_refused_naming_them_and_restart_deletes(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 2)
    with pytest.raises(LshError, match=r"holds the checkpoints of another run \(train.lr differ\); pass --restart"):
        training.train(tiny_params(**{"train.lr": 5}), corpus, tmp_path, 1, resume=True)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt"]
    training.train(tiny_params(**{"train.lr": 5}), corpus, tmp_path, 1, resume=True, restart=True)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt"]
    assert training.load_checkpoint(tmp_path / "epoch-001.pt")["run_config"]["train"]["lr"] == 5


def test_a_failed_checkpoint_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(LshError, match="cannot write .*epoch-001.pt: No space left on device"):
        training.save_checkpoint(tmp_path / "epoch-001.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_divergence_ends_as_status_not_crash(ptb_quick_small, tmp_path):
    out = run_lsh(
        "train", "--params", str(SMOKE), "--out", str(tmp_path), "--epochs", "3",
        "--data", str(ptb_quick_small), "--set", "data.train_tokens=12000",
        "--set", "train.lr=1e12", "--set", "train.clip=1e9",
        "--set", "model.emb=16", "--set", "model.hidden=16", "--set", "train.eval_tokens=4000",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["status"] == "diverged"


@pytest.mark.slow
def test_cli_trains_resumes_and_reports_test_perplexity(ptb_quick_small, tmp_path):
    common = ["--params", str(SMOKE), "--out", str(tmp_path), "--data", str(ptb_quick_small), "--threads", "1",
              "--set", "data.train_tokens=12000",
              "--set", "model.emb=16", "--set", "model.hidden=16", "--set", "train.eval_tokens=4000"]
    assert run_lsh("train", *common, "--epochs", "1").returncode == 0
    out = run_lsh("train", *common, "--epochs", "2", "--resume", "--test")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_ppl"] > 1
    assert "resuming from" in out.stderr


def test_resume_with_other_data_is_refused(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 2)
    other = data.Corpus(train=corpus.train[1000:], valid=corpus.valid, test=corpus.test, vocab=corpus.vocab)
    with pytest.raises(LshError, match=r"another run \(corpus differ\)"):
        training.train(tiny_params(), other, tmp_path, 1, resume=True)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_resume_past_the_target_is_a_no_op_that_deletes_nothing(corpus, tmp_path, caplog):
    training.train(tiny_params(), corpus, tmp_path, 3, test=True)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")}
    with caplog.at_level("INFO", logger="lsh.training"):
        summary = training.train(tiny_params(), corpus, tmp_path, 1, resume=True, test=True)
    assert "already trained to epoch 3 (--epochs 1): nothing to train" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")} == before, "nothing deleted or rewritten"
    assert summary.epochs == 1 and summary.epochs_trained == 0 and summary.test_epoch == 1
    again = training.train(tiny_params(), corpus, tmp_path, 3, resume=True)
    assert again.epochs == 3 and again.epochs_trained == 0


def test_init_continues_a_parent_and_stale_checkpoints_of_another_parent_are_replaced(corpus, tmp_path):
    params = tiny_params()
    training.train(params, corpus, tmp_path / "parent", 1)
    training.train(params, corpus, tmp_path / "child", 2, init=tmp_path / "parent" / "epoch-001.pt")
    assert sorted(p.name for p in (tmp_path / "child").glob("*.pt")) == ["epoch-002.pt"]
    continued = training.load_checkpoint(tmp_path / "child" / "epoch-002.pt")
    training.train(params, corpus, tmp_path / "once", 2)
    once = training.load_checkpoint(tmp_path / "once" / "epoch-002.pt")
    for name in once["model"]:
        assert torch.equal(once["model"][name], continued["model"][name]), "continuing equals training on"
    # the parent is retrained differently: the child's checkpoint no longer continues it
    training.train(tiny_params(**{"train.lr": 3}), corpus, tmp_path / "parent2", 1)
    with pytest.raises(LshError, match="was trained with other params"):
        training.train(params, corpus, tmp_path / "child", 2, init=tmp_path / "parent2" / "epoch-001.pt",
                       resume=True, restart=True)
    (tmp_path / "parent" / "epoch-001.pt").unlink()
    training.train(params, corpus, tmp_path / "parent", 1, resume=True)  # retrained: its history (timings) differs
    with pytest.raises(LshError, match="do not continue"):
        training.train(params, corpus, tmp_path / "child", 2, init=tmp_path / "parent" / "epoch-001.pt", resume=True)
    training.train(params, corpus, tmp_path / "child", 2, init=tmp_path / "parent" / "epoch-001.pt",
                   resume=True, restart=True)
    assert (training.load_checkpoint(tmp_path / "child" / "epoch-002.pt")["history"][:1]
            == training.load_checkpoint(tmp_path / "parent" / "epoch-001.pt")["history"])


def sparse_params(**sets: object) -> RunSpec:
    overrides = [
        "model.emb=8", "model.hidden=8", "train.lr=2", "train.batch_size=4", "train.bptt=10", "train.eval_batch_size=4",
        "train.eval_tokens=null", "sparse.density=0.33", "sparse.death_rate=0.8", "sparse.decay_epochs=10",
        *(f"{k}={json.dumps(v)}" for k, v in sets.items()),
    ]
    return candidate_spec(Params.from_dict(config.load_params(SMOKE, overrides)), {})


def assert_full_count(state: dict, where: str) -> None:
    for name, mask in state["masks"].items():
        w = state["model"][name]
        assert torch.all(w[~mask] == 0), f"{where} {name}: a weight outside the mask"
        assert int((w[mask] != 0).sum()) == int(mask.sum()), f"{where} {name}: zeros inside the mask"


@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_every_sparse_checkpoint_holds_its_masks_full_count_of_weights(tmp_path, growth):
    """Validation, the checkpoint and its spectra see the model as trained: the prune-and-regrow comes
    after, so no checkpoint holds freshly regrown zeros (at death rate 0.8 that was most of a layer)."""
    training.train(sparse_params(**{"sparse.growth": growth}), synthetic_corpus(), tmp_path, 3)
    for epoch in range(4):
        state = training.load_checkpoint(tmp_path / f"epoch-{epoch:03d}.pt")
        assert_full_count(state, f"epoch {epoch}")
        if epoch > 0:
            assert any(not torch.equal(state["masks"][n], state["next_masks"][n]) for n in state["masks"]), \
                "the topology update is stored beside the checkpoint's own masks"


def test_sparse_checkpoints_hold_their_full_count_while_averaging():
    params, corpus = sparse_params(), synthetic_corpus()
    t = trainer_of(params, corpus)
    for epoch in range(1, 4):
        if epoch == 2:
            t.averager.start(t.model)
        t.run_epoch(False)
        assert_full_count(t.state_dict(params.run_config(corpus)), f"epoch {epoch} (averaging: {t.averager.active})")


def test_a_sparse_run_resumed_or_continued_elsewhere_is_bitwise_the_uninterrupted_one(tmp_path):
    params, corpus = sparse_params(**{"train.nonmono": 1}), synthetic_corpus()
    training.train(params, corpus, tmp_path / "once", 4)
    training.train(params, corpus, tmp_path / "twice", 2)
    training.train(params, corpus, tmp_path / "twice", 4, resume=True)
    training.train(params, corpus, tmp_path / "child", 4, init=tmp_path / "twice" / "epoch-002.pt")
    once = training.load_checkpoint(tmp_path / "once" / "epoch-004.pt")
    for other in ("twice", "child"):
        state = training.load_checkpoint(tmp_path / other / "epoch-004.pt")
        for key in ("model", "weights", "masks", "next_masks"):
            for name in once[key]:
                assert torch.equal(once[key][name], state[key][name]), f"{other} {key} {name}"


def test_validation_sees_the_trained_model_and_the_switch_reads_it(monkeypatch):
    """The validated weights are the ones just trained (before the update), so the recorded loss is
    that of the checkpoint's `model`."""
    params, corpus = sparse_params(), synthetic_corpus()
    t = trainer_of(params, corpus)
    model = t.model
    record = t.run_epoch(False)
    assert record["pruned"] > 0
    evaluated = build_model(model.config)
    evaluated.load_state_dict(t.state_dict(params.run_config(corpus))["model"])
    loss = training.evaluate(evaluated, t.valid_data, params.train.bptt)
    # the same float32 model on the same windows: only the float64 sum of the windows' losses (and the mean)
    # could be ordered otherwise, while weights that differ move the loss by far more than float32's eps
    windows = math.ceil((t.valid_data.size(0) - 1) / params.train.bptt)
    assert loss == pytest.approx(record["valid_loss"], rel=accumulated(EPS64, windows + 1), abs=0)
    test = training.batchify(corpus.test, params.train.eval_batch_size, torch.device("cpu"))
    test_loss = training.evaluate(evaluated, test, 10)
    # as above, then exp: the loss's error, relative to the perplexity
    tol = accumulated(EPS64, math.ceil((test.size(0) - 1) / 10) + 2, test_loss)
    assert t.test_perplexity() == pytest.approx(training.perplexity(test_loss), rel=tol, abs=0)


def test_a_model_worse_than_uniform_guessing_is_diverged_even_with_a_finite_loss():
    assert training.divergence(5.0, 5.0, 10_000) is None
    assert "worse than uniform guessing over the 10000-word vocabulary" in training.divergence(5.0, 9.3, 10_000)
    assert training.divergence(5.0, 150.0, 10_000).startswith("the validation perplexity 1.394e+65 is worse")
    assert training.divergence(math.nan, 5.0, 10_000) == "the training loss is no longer finite"
    assert training.divergence(5.0, math.inf, 10_000) == "the validation loss is no longer finite"


def test_a_blown_up_run_ends_as_diverged_with_its_reason(tmp_path):
    params = sparse_params(**{"train.lr": 1e6, "train.clip": 1e9})
    summary = training.train(params, synthetic_corpus(), tmp_path, 3)
    assert summary.status == "diverged" and summary.reason
    assert summary.best_epoch is None or summary.best_valid_ppl <= 40, "a diverged epoch is never the best"


def test_a_checkpoint_without_model_or_run_config_names_the_file_and_key(corpus, tmp_path):
    training.train(tiny_params(), corpus, tmp_path, 0)
    state = torch.load(tmp_path / "epoch-000.pt", weights_only=True)
    for key in ("model", "run_config"):
        broken = {k: v for k, v in state.items() if k != key}
        torch.save(broken, tmp_path / "broken.pt")
        with pytest.raises(LshError, match=f"checkpoint {tmp_path / 'broken.pt'} lacks '{key}'"):
            training.load_checkpoint(tmp_path / "broken.pt")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_holding_code_is_refused_as_unsafe_not_called_corrupted(tmp_path, capfd):
    torch.save({"format": training.CHECKPOINT_FORMAT, "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(LshError) as info:
        training.load_checkpoint(tmp_path / "evil.pt")
    assert "was refused as unsafe" in str(info.value) and "truncated" not in str(info.value)
    assert "this must never run" not in capfd.readouterr().out


def test_init_from_a_diverged_parent_says_it_diverged(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "summary.json").write_text(json.dumps({"status": "diverged", "epochs": 2,
                                                     "reason": "the training loss is no longer finite"}))
    with pytest.raises(LshError, match="--init .*epoch-003.pt does not exist: that run diverged at epoch 2 "
                                       r"\(the training loss is no longer finite\)"):
        training.train(sparse_params(), synthetic_corpus(), tmp_path / "child", 4, init=parent / "epoch-003.pt")


def test_tf32_is_set_for_training_only_and_leaves_cpu_results_bitwise_unchanged(corpus, tmp_path, monkeypatch):
    """train.tf32 sets torch's float32 precision (matmuls and cuDNN RNNs) while the loop runs and
    restores it after; the spectrum code always runs in IEEE float32; on the CPU the weights are the same."""
    from lsh import lyapunov

    seen = []
    real = training.loop.Trainer._train_epoch

    def spy(self, progress):
        seen.append((torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision))
        return real(self, progress)

    monkeypatch.setattr(training.loop.Trainer, "_train_epoch", spy)
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision)
    training.train(tiny_params(), corpus, tmp_path / "ieee", 1)
    training.train(tiny_params(**{"train.tf32": True}), corpus, tmp_path / "tf32", 1)
    assert seen == [("ieee", "ieee"), ("tf32", "tf32")]
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision) == before
    a, b = weights(tmp_path / "ieee" / "epoch-001.pt"), weights(tmp_path / "tf32" / "epoch-001.pt")
    assert all(torch.equal(a[name], b[name]) for name in a)

    qr_modes = []
    real_loop = lyapunov.spectrum.qr_loop

    def loop_spy(*args, **kwargs):
        qr_modes.append(torch.backends.cuda.matmul.fp32_precision)
        return real_loop(*args, **kwargs)

    monkeypatch.setattr(lyapunov.spectrum, "qr_loop", loop_spy)
    model = training.model_from_checkpoint(training.load_checkpoint(tmp_path / "tf32" / "epoch-001.pt"))
    from lsh.device import float32_precision

    with float32_precision(True):
        lyapunov.model_spectrum(model, torch.zeros(6, 2, dtype=torch.long), warmup=2, device="cpu")
    assert qr_modes == ["ieee"]
