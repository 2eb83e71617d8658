"""--phaseN-minutes: a phase's minutes become steps at its start (vaecli/training/pace.py), and the timing leaves no trace."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
from collections.abc import Callable

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


def test_a_validation_is_scaled_by_the_padded_tokens_of_its_batches():
    """Timed on one batch of the longest sentences, a validation of mostly short ones is scaled by padded tokens, not rows."""
    every = np.array([2] * 64 + [10] * 32)
    assert pace.padded_tokens(every, 32) == 2 * 32 * 2 + 32 * 10
    assert pace.validation_seconds(10.0, every[-32:], every, 32) == pytest.approx(10.0 * 448 / 320)


def test_the_timed_validation_counts_the_tokens_the_validation_will_run(t5_dir, corpus, tmp_path, monkeypatch, quarter_second_passes):
    """64 one-word validation sentences and 32 of nine words last: the 32 timed (10 s) are 320 padded tokens of the
    validation's 448, so a validation is 14 s (30 s when scaled by rows, as before)."""
    import vaecli.training.trainer as trainer

    monkeypatch.setattr(trainer, "seconds_of", lambda action, device=None: 10.0)
    valid = tmp_path / "valid.txt"
    valid.write_text("dog\n" * 64 + "the old man said it was a long day\n" * 32)
    events: list[dict] = []
    finetune(TrainConfig(train_file=str(corpus), valid_file=str(valid), model=str(t5_dir), out=str(tmp_path / "m"), phase1_minutes=0.05,
                         phase2_steps=0, **{**TINY, "valid_size": 1000}), events.append)
    _, messages = steps_and_losses(events)
    assert "validations of 14 s" in messages[0] or "validation of 14 s" in messages[0], messages


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


def test_the_learning_rate_shape_is_transformers_linear_schedule_to_the_float():
    from transformers import get_linear_schedule_with_warmup

    from vaecli.training.schedule import WarmupDecay

    for warmup, total in ((0, 1), (0, 7), (3, 40), (23, 460)):
        theirs = get_linear_schedule_with_warmup(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup, total)
        shape = WarmupDecay(warmup, total)
        assert [shape(s) for s in range(total + 2)] == [f(s) for f in theirs.lr_lambdas for s in range(total + 2)]


def test_a_retimed_shape_goes_on_from_where_it_stands_to_zero_at_the_new_total():
    from vaecli.training.schedule import WarmupDecay

    shape = WarmupDecay(4, 44)  # at step 14: (44 - 14) / 40 = 0.75
    shape.retime(14, 29)
    assert [shape(s) for s in (14, 19, 24, 29, 30)] == [0.75, 0.5, 0.25, 0.0, 0.0]
    longer = WarmupDecay(4, 44)
    longer.retime(14, 74)
    assert [longer(s) for s in (14, 44, 74)] == [0.75, 0.375, 0.0]
    # LambdaLR keeps the shape's attributes in its state (JSON, as a checkpoint writes it): a resumed phase decays alike
    param = torch.nn.Parameter(torch.zeros(1))
    saved = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([param], lr=2.0), shape).state_dict()
    fresh = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([param], lr=2.0), WarmupDecay(1, 29))
    fresh.load_state_dict(json.loads(json.dumps(saved)))
    assert [fresh.lr_lambdas[0](s) for s in (14, 19, 29)] == [0.75, 0.5, 0.0]


def test_steps_left_fit_the_minutes_left():
    """Re-timed after 40 steps and 50 s: 70 s left of 2 minutes, steps of 0.5 s and validations of 10 s every 25 steps
    (done: the ones at 25; to come: one at 50, 75, ... and at the end)."""
    assert [pace.validations(n, 25, done=40) for n in (41, 50, 51, 75, 76)] == [1, 1, 2, 2, 3]
    # 100 steps: 60 x 0.5 + 3 x 10 = 60 s; 101 needs a fourth validation: 70.5 s
    assert pace.steps_for(2.0, 0.5, 10.0, 25, done=40, spent=50.0) == 100
    assert pace.steps_for(2.0, 0.5, 10.0, 25, done=40, spent=130.0) == 41  # the minutes are spent: one more step, and its end
    assert pace.steps_for(2.0, 0.5, 10.0, 25) == 125  # none done, as at the phase's start: 62.5 + 5 x 10; 126 needs 123 s
    # a quarter, a half and three quarters of the steps, from the 8th step on
    assert [pace.Retiming(n).at for n in (0, 7, 10, 29, 32, 130)] == [0, 0, 8, 14, 8, 32]
    retiming = pace.Retiming(99)
    # each share once, against the count as it stands: 99 steps re-timed at 25 to 111 re-time next at half of 111, not at
    # its quarter (28, a step later)
    assert [retiming.at, retiming.next_after(111, 25), retiming.next_after(106, 56), retiming.next_after(115, 80)] == [25, 56, 80, 0]


def test_a_phase_in_minutes_retimes_itself_on_its_own_steps_and_resumes_on_its_new_length(t5_dir, corpus, tmp_path, monkeypatch):
    """The start's passes time a step at about 0.5 s; the loop's steps take 0.25 s each (a clock that each step moves). When
    a quarter of the timed steps have run, the phase times itself again: more steps, the learning rate going on from where
    it stood to 0 at the new last step, training.json holding the new count (the re-timings at a half and three quarters
    find the same count and say nothing); interrupted after that and resumed, the run's losses are the uninterrupted run's."""
    from vaecli.training import trainer

    now = [0.0]
    monkeypatch.setattr(trainer, "perf_counter", lambda: now[0])
    cfg = dict(train_file=str(corpus), model=str(t5_dir), phase1_minutes=0.4, phase2_steps=0, phase1_denoise=0.2,
               **{**TINY, "valid_every": 1000})

    def clocked(events: list[dict], stop_at: int = 0) -> Callable[[dict], None]:
        def on_event(event: dict) -> None:
            events.append(event)
            if event["kind"] == "step":
                now[0] += 0.25
                if event["step"] == stop_at:
                    os.kill(os.getpid(), signal.SIGINT)
        return on_event

    ticks = itertools.count()
    monkeypatch.setattr(pace, "perf_counter", lambda: 0.25 * next(ticks))
    full: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "full"), **cfg), clocked(full))
    texts = [e["text"] for e in full if e["kind"] == "message"]
    planned = int(next(re.search(r"= (\d+) steps", t).group(1) for t in texts if "minutes at" in t))
    retimed = [re.fullmatch(r"phase 1: re-timed on its first (\d+) steps, 4\.00 steps/s: (\d+) steps \(timed at (\d+)\); "
                            r"--phase1-steps \2 runs as many", t) for t in texts if "re-timed" in t]
    assert len(retimed) == 1 and retimed[0]
    done, total = int(retimed[0].group(1)), int(retimed[0].group(2))
    assert done == pace.Retiming(planned).at >= pace.REPLAN_MIN_STEPS and int(retimed[0].group(3)) == planned
    assert total > planned  # steps of 0.25 s where the passes said about 0.5
    steps = [e for e in full if e["kind"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, total + 1)) and {e["total"] for e in steps[done:]} == {total}
    assert json.loads((tmp_path / "full" / "training.json").read_text())["resolved"]["phase1_steps"] == total
    at_knee = steps[done - 1]["lr"]  # the rate after step `done`: where the re-timed decay starts
    assert [e["lr"] for e in steps[done - 1:]] == pytest.approx([at_knee * (total - s) / (total - done) for s in range(done, total + 1)])
    assert steps[-1]["lr"] == 0.0

    ticks = itertools.count()
    part: list[dict] = []
    with pytest.raises(Interrupted):
        finetune(TrainConfig(out=str(tmp_path / "part"), **cfg), clocked(part, stop_at=done + 2))
    rest: list[dict] = []
    finetune(TrainConfig(out=str(tmp_path / "part"), **cfg), clocked(rest), resume=True)
    assert steps_and_losses(part)[0] + steps_and_losses(rest)[0] == steps_and_losses(full)[0]
    assert not [e for e in rest if e["kind"] == "message" and "timed" in e["text"]]  # the resumed part times nothing
