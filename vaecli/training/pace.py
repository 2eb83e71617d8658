"""`--phaseN-minutes`: a phase's length in minutes of this machine, turned into optimizer steps before its first step.

A phase's learning-rate schedule (and phase 2's beta schedule) is laid over its real step count, so minutes become steps
once, when the phase starts. What the phase's minutes must hold is timed on this machine:

- a step: a few forward and backward passes on the phase's own first batches, with the parameters that train in this
  phase, give seconds per padded token; a typical step is that times the mean padded tokens of a batch over an epoch of
  the phase's batches (batches group sentences of similar length, so the first few are not a typical step), plus the
  clipping and optimizer update, timed once on zero gradients at learning rate 0;
- a validation: the validation of a few of the validation sentences, scaled to all of them by their padded tokens in
  the validation's own batches (of similar lengths; the few are one batch, padded to their longest); the phase
  validates every --valid-every steps and at its end.

The steps are the most whose passes and validations fit the minutes. The timing leaves no trace: no weight changes, no
.grad left written, the random generator as it was. A few passes misjudge a step by up to 20% either way on a busy
virtual machine, so when a quarter, a half and three quarters of its steps have run (`Retiming`), the phase times itself
again on them: the seconds its real steps took (validations and checkpoints set apart) and the time left give its steps
anew, and the learning rate goes on from where it stands and decays to 0 at the new count (schedule.WarmupDecay.retime).
The steps go into the checkpoint and training.json, so a resumed run keeps them, and `--phaseN-steps` runs the same
number on any machine (its learning rates before the last re-timing then differ by that re-timing's share).
Checkpoints (a few seconds each) and the aggregate prior's fit after training take their own time on top of the minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np
import torch

from vaecli.modeling.randomness import forked
from vaecli.modeling.tokens import length_batches

PROBE_PASSES = 6
"""Timed forward and backward passes (after one untimed: the first pass allocates and warms the kernels)."""


def mean_batch_tokens(batches: Sequence[Sequence[int]], lengths: np.ndarray) -> float:
    """Mean padded tokens (rows x the longest row) of a batch, over an epoch's batches of sentence indices."""
    if not batches:
        return 0.0
    return float(np.mean([len(b) * int(lengths[np.asarray(b)].max()) for b in batches]))


def padded_tokens(lengths: np.ndarray, batch_size: int) -> int:
    """Padded tokens (rows x the longest row, summed) of validation's batches of `lengths` (modeling.tokens.length_batches,
    in order)."""
    batches = length_batches(lengths, batch_size, 0, 0, shuffle=False)
    return round(mean_batch_tokens(batches, lengths) * len(batches))


def validation_seconds(timed: float, few: np.ndarray, every: np.ndarray, batch_size: int) -> float:
    """Seconds of a validation of sentences of lengths `every`, from `timed`, the seconds of one of those of lengths `few`."""
    return timed * padded_tokens(every, batch_size) / max(padded_tokens(few, batch_size), 1)


def seconds_per_token(passes: Iterator[dict[str, torch.Tensor]], run_pass: Callable[[dict[str, torch.Tensor]], None],
                      count: int = PROBE_PASSES) -> float:
    """Seconds of `run_pass` (a forward and backward) per padded token, timed over `count` batches after one untimed;
    the global random generators (the CPU's, the batches' GPU's) are restored afterwards."""
    first = next(passes)
    device = first["input_ids"].device
    with forked(device):
        run_pass(first)
        seconds, tokens = 0.0, 0
        for _ in range(count):
            batch = next(passes)
            seconds += seconds_of(lambda: run_pass(batch), device)
            tokens += batch["input_ids"].numel()
    return seconds / max(1, tokens)


def seconds_of(action: Callable[[], object], device: torch.device = torch.device("cpu")) -> float:
    """Seconds `action` takes on `device` (a GPU computes after the call returns: it is waited for); the global random
    generators are restored afterwards."""
    with forked(device):
        finished(device)
        started = perf_counter()
        action()
        finished(device)
        return perf_counter() - started


def finished(device: torch.device) -> None:
    """Wait for what `device` was given to compute (a GPU's kernels run after the calls that queue them return)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def update_seconds(params: list[torch.nn.Parameter], make_optimizer: Callable[[], torch.optim.Optimizer], clip: float) -> float:
    """Seconds of a step's gradient clipping and optimizer update, timed on zero gradients at learning rate 0 with a
    throwaway optimizer of the loop's kind (its first update, which allocates its state, untimed): the weights do not
    move (AdamW's update and decoupled decay are both multiplied by the rate) and the gradients are given back."""
    saved = [p.grad for p in params]
    optimizer = make_optimizer()
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    try:
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()

        def update() -> None:
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()

        return seconds_of(update, params[0].device if params else torch.device("cpu"))
    finally:
        for p, grad in zip(params, saved):
            p.grad = grad


def validations(steps: int, valid_every: int, done: int = 0) -> int:
    """Validations of a phase of `steps` steps after its step `done`: every `valid_every` steps and at the end."""
    return math.ceil(steps / valid_every) - done // valid_every


def steps_for(minutes: float, step_seconds: float, valid_seconds: float = 0.0, valid_every: int = 1, done: int = 0,
              spent: float = 0.0) -> int:
    """The most optimizer steps whose time, with their validations, fits `minutes` (at least `done` + 1): `done` steps have
    run and taken `spent` seconds, each further step takes `step_seconds` and each validation `valid_seconds`."""
    budget = minutes * 60 - spent

    def cost(n: int) -> float:
        return (n - done) * step_seconds + validations(n, valid_every, done) * valid_seconds

    n = done + max(1, int((budget - valid_seconds) / max(step_seconds + valid_seconds / valid_every, 1e-9)))
    while cost(n + 1) <= budget:
        n += 1
    while n > done + 1 and cost(n) > budget:
        n -= 1
    return n


@dataclass
class LoopTime:
    """What a phase's loop spent beside its steps: its validations (their count and seconds) and its checkpoints."""

    validations: int = 0
    validation_seconds: float = 0.0
    checkpoint_seconds: float = 0.0

    def step_seconds(self, elapsed: float, steps: int) -> float:
        """Seconds a step took, of `steps` steps in `elapsed` seconds of the loop."""
        return (elapsed - self.validation_seconds - self.checkpoint_seconds) / steps

    def validation(self, timed: float) -> float:
        """Seconds a validation took in the loop (`timed`, the start's estimate, before the first)."""
        return self.validation_seconds / self.validations if self.validations else timed


REPLAN_SHARES = (0.25, 0.5, 0.75)
"""A phase in minutes times itself again, on its own steps, when these shares of its steps have run."""
REPLAN_MIN_STEPS = 8
"""A phase is not re-timed on fewer steps than this."""


class Retiming:
    """When a phase in minutes times itself again: at each of REPLAN_SHARES of its steps in turn, each share once, against
    its step count as it stands; `at` is the next such step (0: no more)."""

    def __init__(self, total: int) -> None:
        self.share = 0  # the next of REPLAN_SHARES to look at
        self.at = self.next_after(total, 0)

    def next_after(self, total: int, done: int) -> int:
        """The next re-timing's step after `done` of a phase now of `total` steps; the shares before it are used up."""
        while self.share < len(REPLAN_SHARES):
            step = round(REPLAN_SHARES[self.share] * total)
            self.share += 1
            if done < step < total and step >= REPLAN_MIN_STEPS:
                self.at = step
                return step
        self.at = 0
        return 0


def describe(phase: int, minutes: float, step_seconds: float, steps: int, valid_seconds: float = 0.0, valid_every: int = 1) -> str:
    """The line a run prints when it has turned a phase's minutes into steps."""
    checks = validations(steps, valid_every)
    return (f"phase {phase}: {minutes:g} minutes at {1 / step_seconds:.2f} steps/s (timed on {PROBE_PASSES} batches) and "
            f"{checks} validation{'s' if checks != 1 else ''} of {valid_seconds:.0f} s = {steps} steps; "
            f"--phase{phase}-steps {steps} repeats them")


def describe_replan(phase: int, done: int, step_seconds: float, steps: int, before: int) -> str:
    """The line a run prints when a phase in minutes has re-timed itself on its own steps."""
    return (f"phase {phase}: re-timed on its first {done} steps, {1 / step_seconds:.2f} steps/s: {steps} steps "
            f"(timed at {before}); --phase{phase}-steps {steps} runs as many")
