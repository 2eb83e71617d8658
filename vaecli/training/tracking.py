"""Live tracking (`--report-to tensorboard|wandb`) through accelerate's trackers, into DIR/logs/.

Every training record and validation of metrics.jsonl goes to the tracker as scalars (`train/rec`,
`valid/acc`, ...) at the run's global step (phase 2 continues after phase 1), the run's settings as
hyperparameters, and at each validation a few validation sentences beside their reconstructions as
text. The trackers are optional extras; a missing one is one line saying what to install, before
torch loads (this module imports nothing heavy at the top).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from vaecli.errors import InputError

REPORTERS = {"tensorboard": ("tensorboard", "vaecli[tensorboard]"), "wandb": ("wandb", "vaecli[wandb]")}
"""--report-to name -> (the package it needs, the extra that installs it)."""
LOGS_DIR = "logs"
SHOWN = 4  # validation sentences shown with their reconstructions at each validation
SKIPPED = ("kind", "phase", "step", "total", "best")  # what a record holds that is not a metric


def check_reporter(name: str | None) -> None:
    """Refuse --report-to X when X's package is missing (or X is unknown), in one line."""
    if name is None:
        return
    if name not in REPORTERS:
        raise InputError(f"--report-to must be one of {', '.join(REPORTERS)}, not {name!r}")
    package, extra = REPORTERS[name]
    if importlib.util.find_spec(package) is None:
        raise InputError(f"--report-to {name} needs the {package} package: pip install '{extra}'")


def scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a tracker can store as hyperparameters: numbers, strings and booleans (None as "none")."""
    return {k: ("none" if v is None else v) for k, v in config.items() if v is None or isinstance(v, (bool, int, float, str))}


class Tracking:
    """Sends a run's records to accelerate's trackers; does nothing without --report-to."""

    def __init__(self, accelerator: Any, enabled: bool, phase1_steps: int) -> None:
        self.accelerator, self.enabled, self.phase1_steps = accelerator, enabled, phase1_steps

    def global_step(self, phase: int, step: int) -> int:
        return step + (self.phase1_steps if phase == 2 else 0)

    def record(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record as scalars named `<kind>/<metric>`."""
        if not self.enabled:
            return
        values = {f"{record['kind']}/{k}": float(v) for k, v in record.items()
                  if k not in SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.accelerator.log(values, step=self.global_step(record["phase"], record["step"]))

    def reconstructions(self, pairs: list[tuple[str, str]], phase: int, step: int) -> None:
        """Validation sentences and their greedy reconstructions from mu, as a markdown table of text."""
        if not self.enabled:
            return
        rows = "\n".join(f"| {a.replace('|', '/')} | {b.replace('|', '/')} |" for a, b in pairs)
        self.accelerator.log({"valid/reconstructions": f"| sentence | reconstruction |\n| --- | --- |\n{rows}"},
                             step=self.global_step(phase, step))

    def end(self) -> None:
        if self.enabled:
            self.accelerator.end_training()
