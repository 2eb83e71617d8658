"""What a validation says about a run: which one to keep, and whether the decoder ignores z."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vaecli.config import TrainConfig

COLLAPSE_NATS = 0.1  # KL or shuffle gap below this (nats per sentence) means z carries ~nothing


def keep_score(metrics: dict[str, float]) -> float:
    """The validation score whose best (lowest) value `vae finetune` keeps, in both phases: Rec, the
    reconstruction loss with z ~ q(z|x).

    Not -ELBO (Rec + KL): a decoder that ignores z reaches KL 0, and at a CPU budget a collapsed
    model has the lower -ELBO (README, the ablation: 58.3 against 67.0 nats), so -ELBO keeps the
    moments of a cyclical beta where z carries least. Rec is lowest where the decoder reads z most.
    """
    return metrics["rec"]


@dataclass
class Keeper:
    """Which validation's weights the run keeps (the best keep_score so far), and phase 2's patience count."""

    best: float = math.inf
    kept: dict[str, Any] | None = None
    """The kept validation: phase, step, latent size and its metrics."""
    without_gain: int = 0
    """Validations since the last better one."""

    def judge(self, metrics: dict[str, float], phase: int, step: int, dims: int) -> bool:
        """Record a validation; True when it is the best so far (its weights are to be saved)."""
        score = keep_score(metrics)
        if score < self.best:
            self.best, self.without_gain = score, 0
            self.kept = {"phase": phase, "step": step, "dims": dims, **metrics}
            return True
        self.without_gain += 1
        return False

    def state(self) -> dict[str, Any]:
        return {"best": self.best if math.isfinite(self.best) else None, "kept": self.kept, "validations_without_gain": self.without_gain}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> Keeper:
        best = saved.get("best")
        return cls(best if best is not None else math.inf, saved.get("kept"), saved.get("validations_without_gain", 0))


def collapse_warning(cfg: TrainConfig, phase: int, metrics: dict[str, float], phase1_steps: int) -> str | None:
    """A warning when the decoder ignores z (AU 0 or shuffle gap under 0.1 nats; in phase 2 also KL
    under 0.1), with advice built from the run's settings: only what is not already set."""
    if metrics["au"] is None or metrics["gap"] is None:  # one validation sentence: nothing to compare
        return None
    collapsed = metrics["au"] == 0 or metrics["gap"] < COLLAPSE_NATS or (phase == 2 and metrics["kl"] < COLLAPSE_NATS)
    if not collapsed:
        return None
    tries = []
    if phase == 1 or cfg.phase == "both":
        tries.append(f"a longer phase 1 (now {phase1_steps} steps)")
        if not cfg.freeze_decoder:
            tries.append("--freeze-decoder (phase 1 can then lower the loss only through z)")
    if phase == 2:
        if cfg.free_bits < 3:
            tries.append(f"--free-bits 3 (now {cfg.free_bits:g})")
        if cfg.denoise < 0.4:
            tries.append(f"--denoise 0.4 (now {cfg.denoise:g})")
        if cfg.beta_max > 0.5:
            tries.append(f"--beta-max 0.5 (now {cfg.beta_max:g})")
    kl = f", KL {metrics['kl']:.3f}" if phase == 2 else ""
    advice = f". Try {', '.join(tries)}" if tries else ""
    return (f"warning: phase {phase}: the decoder ignores z (AU {metrics['au']}{kl}, shuffle gap {metrics['gap']:.3f} nats)"
            f"{advice}")
