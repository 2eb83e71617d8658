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
