"""--phaseN-minutes: a phase's minutes become steps at its start (vaecli/training/pace.py), and the timing leaves no trace."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import TrainConfig
from vaecli.errors import ConfigError, Interrupted, RunError
from vaecli.training import pace
from vaecli.training.trainer import finetune

TINY = dict(batch_size=8, valid_every=4, save_every=100, bf16="no", valid_size=40, latent_dim=8, lr=1e-3)


def test_mean_batch_tokens_counts_padding_to_the_longest_row():
    lengths = np.array([3, 5, 7, 2])
    assert pace.mean_batch_tokens([[0, 1], [2], [3, 0, 1]], lengths) == (2 * 5 + 1 * 7 + 3 * 5) / 3
    assert pace.mean_batch_tokens([], lengths) == 0.0


def test_steps_fill_the_minutes_and_are_at_least_one():
    assert pace.steps_for(2.0, 0.5) == 240
    assert pace.steps_for(1.0, 0.7) == 85  # 60 / 0.7 = 85.7: a step that would not end within the minutes is not taken
    assert pace.steps_for(0.001, 30.0) == 1


def test_the_minutes_hold_the_validations_too():
    """Validations every --valid-every steps and at the end: 100 s of steps of 1 s and validations of 10 s."""
    assert [pace.validations(n, 25) for n in (1, 25, 26, 50, 51)] == [1, 1, 2, 2, 3]
    # 70 steps: 70 + 3 x 10 = 100 s; 71 would need 71 + 30 = 101
    assert pace.steps_for(100 / 60, 1.0, 10.0, 25) == 70
    # 74 + 30 = 104 fits exactly; 75 + 30 = 105 does not
    assert pace.steps_for(104 / 60, 1.0, 10.0, 25) == 74
    assert pace.steps_for(106 / 60, 1.0, 10.0, 25) == 75  # 75 + 30 = 105 fits; 76 needs a 4th validation: 116
    assert pace.steps_for(5 / 60, 1.0, 10.0, 25) == 1  # not even one step and its validation fit: still one step
    assert pace.describe(1, 1.75, 1.0, 75, 10.0, 25) == ("phase 1: 1.75 minutes at 1.00 steps/s (timed on 6 batches) and 3 "
                                                         "validations of 10 s = 75 steps; --phase1-steps 75 repeats them")


def test_the_update_is_timed_without_moving_a_weight_and_gives_the_gradients_back(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(pace, "perf_counter", lambda: 0.5 * next(ticks))
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    params = list(layer.parameters())
    layer(torch.randn(2, 4)).sum().backward()
    params[1].grad = None  # one with a gradient, one without
    weight, grad = params[0].detach().clone(), params[0].grad.clone()
    made = []

    def make():
        made.append(torch.optim.AdamW(params, lr=0.1, weight_decay=0.5))
        return made[-1]

    assert pace.update_seconds(params, make, clip=1.0) == 0.5
    assert torch.equal(params[0], weight) and torch.equal(params[0].grad, grad) and params[1].grad is None
    assert len(made) == 1 and made[0].param_groups[0]["lr"] == 0.0


def test_timing_passes_leave_the_random_generator_as_it_was(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(pace, "perf_counter", lambda: 0.25 * next(ticks))  # each timed pass takes 0.25 s
    batches = iter([{"input_ids": torch.zeros(2, n)} for n in (9, 3, 4, 5, 6, 7, 8, 100)])
    seen: list[int] = []

    def run_pass(batch):
        seen.append(batch["input_ids"].shape[1])
        torch.rand(7)  # a pass draws from the generator (token deletion, dropout)

    torch.manual_seed(1)
    per_token = pace.seconds_per_token(batches, run_pass)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(3))
    assert seen == [9, 3, 4, 5, 6, 7, 8]  # one untimed pass, then PROBE_PASSES timed
    assert per_token == pytest.approx(6 * 0.25 / (2 * (3 + 4 + 5 + 6 + 7 + 8)))


def steps_and_losses(events: list[dict]) -> tuple[list[tuple[int, int, float]], list[str]]:
    return ([(e["phase"], e["step"], e["loss"]) for e in events if e["kind"] == "step"],
            [e["text"] for e in events if e["kind"] == "message" and "minutes at" in e["text"]])


@pytest.fixture
def quarter_second_passes(monkeypatch):
    """Every timed pass takes 0.25 s: the steps a phase's minutes come to are the same on any machine."""
    ticks = itertools.count()
    monkeypatch.setattr(pace, "perf_counter", lambda: 0.25 * next(ticks))


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_minutes_become_the_steps_a_run_with_those_steps_repeats(family, t5_dir, bert_dir, llama_dir, corpus, tmp_path,
                                                                 quarter_second_passes):
    """Both phases in minutes (token deletion drawing from the generator in both): the run takes the steps its message
    names, training.json records them, and a run given those steps has the same losses: the timing changed nothing."""
    backbone = {"model": str(t5_dir)} if family == "t5" else {"encoder": str(bert_dir), "decoder": str(llama_dir)}
    shared = dict(train_file=str(corpus), phase1_denoise=0.2, denoise=0.3, seed=3, **backbone, **TINY)
    timed: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "timed"), phase1_minutes=0.05, phase2_minutes=0.04, **shared), timed.append)
    losses, messages = steps_and_losses(timed)
    counts = [int(re.search(r"= (\d+) steps", m).group(1)) for m in messages]
    assert [m.split(":")[0] for m in messages] == ["phase 1", "phase 2"] and all(n >= 2 for n in counts)
    assert [max(s for p, s, _ in losses if p == phase) for phase in (1, 2)] == counts
    resolved = json.loads((tmp_path / "timed" / "training.json").read_text())["resolved"]
    assert [resolved["phase1_steps"], resolved["phase2_steps"]] == counts
    stepped: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "stepped"), phase1_steps=counts[0], phase2_steps=counts[1], **shared), stepped.append)
    assert steps_and_losses(stepped) == (losses, [])


def test_a_resumed_run_keeps_the_steps_its_minutes_came_to(t5_dir, corpus, tmp_path, monkeypatch):
    """Interrupted in phase 1, resumed on a machine that times 4x slower: the same steps, the same losses, no second timing."""
    ticks = itertools.count()
    monkeypatch.setattr(pace, "perf_counter", lambda: 0.25 * next(ticks))
    cfg = dict(train_file=str(corpus), model=str(t5_dir), phase1_minutes=0.05, phase2_steps=0, phase1_denoise=0.2, **TINY)
    full: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "full"), **cfg), full.append)

    part: list[dict] = []

    def interrupt_at_step2(event: dict) -> None:
        part.append(event)
        if event["kind"] == "step" and event["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    ticks = itertools.count()
    out = tmp_path / "part"
    with pytest.raises(Interrupted):
        finetune(TrainConfig(out=str(out), **cfg), interrupt_at_step2)
    monkeypatch.setattr(pace, "perf_counter", lambda: next(ticks))
    rest: list[dict] = []
    finetune(TrainConfig(out=str(out), **cfg), rest.append, resume=True)
    full_losses, full_messages = steps_and_losses(full)
    assert steps_and_losses(part)[0] + steps_and_losses(rest)[0] == full_losses
    assert steps_and_losses(part)[1] == full_messages and steps_and_losses(rest)[1] == []
    with pytest.raises(RunError, match="--resume cannot change --phase1-steps 9"):
        finetune(TrainConfig(out=str(out), phase1_steps=9, **cfg), resume=True, given={"phase1_steps"})


def test_minutes_are_checked_with_the_other_settings():
    with pytest.raises(ConfigError) as err:
        TrainConfig(train_file="x", phase1_minutes=0, phase2_minutes=2, phase2_epochs=1)
    assert str(err.value) == ("--phase1-minutes must be > 0; --phase2-epochs and --phase2-minutes both set a phase's length: give one")
    assert TrainConfig(train_file="x", phase1_steps=0, phase2_steps=0, phase1_minutes=1.5).phase1_minutes == 1.5


def test_cli_prints_what_the_minutes_came_to(t5_dir, corpus, tmp_path, quarter_second_passes):
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--model", str(t5_dir), "--out", str(tmp_path / "m"), "--batch-size", "8",
                                 "--latent-dim", "6", "--phase1-minutes", "0.05", "--phase2-steps", "0", "--bf16", "no"])
    assert r.exit_code == 0, r.output
    timed = re.search(r"phase 1: 0\.05 minutes at \d+\.\d\d steps/s \(timed on 6 batches\) and \d+ validations? of \d+ s = (\d+) steps; "
                      r"--phase1-steps \d+ repeats them", r.output)
    took = re.search(r"phase 1: (\d+) steps and their validations took \d+\.\d minutes of its 0\.05\n", r.output)
    assert timed and took and took.group(1) == timed.group(1)  # what the minutes came to, then what they took
