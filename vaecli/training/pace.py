"""`--phaseN-minutes`: a phase's length in minutes of this machine, turned into optimizer steps before its first step.

A phase's learning-rate schedule (and phase 2's beta schedule) is laid over its real step count, so minutes become steps
once, when the phase starts: a few forward and backward passes on the phase's own first batches, with the parameters
that train in this phase, time this machine's seconds per padded token; a typical step is that times the mean padded
tokens of a batch over an epoch of the phase's batches (batches group sentences of similar length, so the first few are
not a typical step). The passes leave no trace: no optimizer step, no .grad written, the random generator as it was.
The steps go into the checkpoint and training.json, so a resumed run keeps them and `--phaseN-steps` repeats the run on
any machine. Validation, checkpoints and the aggregate prior's fit take their own time on top of the minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from time import perf_counter

import numpy as np
import torch

PROBE_PASSES = 4
"""Timed forward and backward passes (after one untimed: the first pass allocates and warms the kernels)."""


def mean_batch_tokens(batches: Sequence[Sequence[int]], lengths: np.ndarray) -> float:
    """Mean padded tokens (rows x the longest row) of a batch, over an epoch's batches of sentence indices."""
    if not batches:
        return 0.0
    return float(np.mean([len(b) * int(lengths[np.asarray(b)].max()) for b in batches]))


def seconds_per_token(passes: Iterator[dict[str, torch.Tensor]], run_pass: Callable[[dict[str, torch.Tensor]], None],
                      count: int = PROBE_PASSES) -> float:
    """Seconds of `run_pass` (a forward and backward) per padded token, timed over `count` batches after one untimed;
    the global random generator is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        run_pass(next(passes))
        seconds, tokens = 0.0, 0
        for _ in range(count):
            batch = next(passes)
            started = perf_counter()
            run_pass(batch)
            seconds += perf_counter() - started
            tokens += batch["input_ids"].numel()
    return seconds / max(1, tokens)


def steps_for(minutes: float, step_seconds: float) -> int:
    """Optimizer steps that fill `minutes` at `step_seconds` a step (at least 1)."""
    return max(1, int(minutes * 60 / max(step_seconds, 1e-9)))


def describe(phase: int, minutes: float, step_seconds: float, steps: int) -> str:
    """The line a run prints when it has turned a phase's minutes into steps."""
    return (f"phase {phase}: {minutes:g} minutes at {1 / step_seconds:.2f} steps/s (timed on {PROBE_PASSES} batches) "
            f"= {steps} steps; --phase{phase}-steps {steps} repeats them")
