"""The KL weight over phase 2, defined on the real number of optimizer steps.

Step `s` counts from 0 to `total - 1`. With `ramp` = r:

- constant: beta_max at every step.
- linear:   rises from 0 to beta_max over the first r * total steps, then stays.
- cyclical: `cycles` equal cycles over `total`; in each, beta rises from 0 to beta_max over the
            first r of the cycle, then stays at beta_max (Fu et al. 2019). The last cycle ends
            exactly at the last step, so beta_max is reached whatever the budget.
"""

from __future__ import annotations

import math


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
