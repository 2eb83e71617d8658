"""The schedules of a phase, defined on its real number of optimizer steps: the learning rate's shape, phase 2's KL
weight and --distill's weight.

Step `s` counts from 0 to `total - 1`. With `ramp` = r:

- constant: beta_max at every step.
- linear:   rises from 0 to beta_max over the first r * total steps, then stays.
- cyclical: `cycles` equal cycles over `total`; in each, beta rises from 0 to beta_max over the
            first r of the cycle, then stays at beta_max (Fu et al. 2019). The last cycle ends
            exactly at the last step, so beta_max is reached whatever the budget.
"""

from __future__ import annotations

import math

from vaecli.config import DISTILL_HOLD


class WarmupDecay:
    """The learning rate's multiplier at step `s` of a phase of `total` steps: a linear warm-up over `warmup` steps, then a
    linear decay to 0 at `total` (transformers' get_linear_schedule_with_warmup, the same floats).

    `retime(step, total)` gives the phase a new length from `step` on: the multiplier goes on from its value there and
    decays linearly to 0 at the new total. An object, not a function: LambdaLR's state_dict keeps an object's attributes,
    so a checkpoint holds the phase's length and a re-timed phase (training.pace) resumes on its new one."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.planned, self.total = warmup, total, total
        self.knee, self.knee_value = 0, None  # where a re-timing took over, and the multiplier there

    def __call__(self, step: int) -> float:
        if self.knee_value is not None and step >= self.knee:
            return max(0.0, self.knee_value * float(self.total - step) / float(max(1, self.total - self.knee)))
        if step < self.warmup:
            return float(step) / float(max(1, self.warmup))
        return max(0.0, float(self.planned - step) / float(max(1, self.planned - self.warmup)))

    def retime(self, step: int, total: int) -> None:
        self.knee_value = self(step)
        self.knee, self.total = step, total


def beta_at(step: int, total: int, schedule: str, beta_max: float, cycles: int = 4, ramp: float = 0.5) -> float:
    if schedule == "constant" or total <= 0:
        return beta_max
    if schedule == "linear":
        rise = max(1, math.ceil(ramp * total))
        return beta_max * min(1.0, step / rise)
    if schedule == "cyclical":
        period = total / cycles
        position = (step % period) / period if period > 0 else 1.0
        return beta_max * min(1.0, position / ramp)
    raise ValueError(f"unknown beta schedule {schedule!r}")


def beta_curve(training: dict, offset: int) -> tuple[list[int], list[float]] | None:
    """beta at every step of the run, from the schedule itself and training.json (metrics.jsonl keeps
    every 10th step only, which misses the dips of a cyclical schedule)."""
    cfg, resolved = training.get("config", {}), training.get("resolved", {})
    if not cfg or "phase2_steps" not in resolved:
        return None
    xs, ys = [], []
    if cfg.get("phase", "both") in ("both", "1"):
        xs += list(range(1, offset + 1))
        ys += [0.0] * offset
    if cfg.get("phase", "both") in ("both", "2"):
        total = resolved["phase2_steps"]
        # the value used for the update that ends at step s + 1
        xs += [offset + s + 1 for s in range(total)]
        ys += [beta_at(s, total, cfg["beta_schedule"], cfg["beta_max"], cfg["beta_cycles"], cfg["beta_ramp"]) for s in range(total)]
    return xs, ys


def distill_at(step: int, total: int, weight: float, decay: bool) -> float:
    """--distill's weight at step `s` of `total`: `weight` throughout, or with --distill-decay `weight` for the first
    DISTILL_HOLD steps, then falling linearly to 0 at `total` (a phase that re-times itself goes on from the weight it has
    at its new length). The hold is the quick start's phase (200-270 steps on rounds nineteen to twenty-four's machine),
    where the full weight won (held-out token accuracy +3.7, +4.6 points at 200 steps, two seeds) and a weight falling
    from step 0 lost 3.5 points on one of two seeds; the fall won the hour (README, rounds twenty-four and twenty-five)."""
    if not decay or total <= DISTILL_HOLD:
        return weight
    return weight * max(0.0, min(1.0, (total - step) / (total - DISTILL_HOLD)))
