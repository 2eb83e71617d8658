"""`vae finetune --resume`: which options the user may change on a checkpoint, and how."""

from __future__ import annotations

from pathlib import Path

from vaecli.config import RESUMABLE, TrainConfig, flag_of
from vaecli.errors import RunError


def resume_config(saved: TrainConfig, cfg: TrainConfig, given: set[str], phase: int, step: int) -> tuple[TrainConfig, list[str]]:
    """The checkpoint's config with the options the user gave again applied where they can change;
    returns it and the changes made. A given option that differs and cannot change raises."""
    changes, refused = {}, []
    for name in sorted(given):
        new, old = getattr(cfg, name), getattr(saved, name)
        if new == old or (name in ("train_file", "valid_file") and new and old and _same_file(new, old)) or name == "out":
            continue
        flag = flag_of(name)
        if name in ("phase1_steps", "phase2_steps"):
            at = step if int(name[5]) == phase else (0 if int(name[5]) > phase else None)
            overridden = any(getattr(saved, name.replace("steps", unit)) is not None for unit in ("epochs", "minutes"))
            if at is None or new < at or overridden:
                refused.append(f"{flag} {new} (checkpoint: {old}; phase {phase} is at step {step})")
                continue
        elif name not in RESUMABLE:
            refused.append(f"{flag} {new} (checkpoint: {old})")
            continue
        changes[name] = new
    if refused:
        raise RunError(
            f"--resume cannot change {', '.join(refused)}; drop them to continue the run as it was, or start a new "
            f"run with --overwrite (on resume only {', '.join(flag_of(n) for n in RESUMABLE)} may change)"
        )
    notes = [f"{flag_of(n)} {v} (was {getattr(saved, n)})" for n, v in changes.items()]
    return TrainConfig.from_dict({**saved.to_dict(), **changes}), notes


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:
        return False
