"""Resumable checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory `checkpoint/` beside the model files: the model directory files plus
`optimizer.safetensors` (AdamW moments, RNG state) and `trainer_state.json` (phase, step, schedule
state, best score). It is written into `checkpoint.tmp/` and renamed into place, so a process killed
at any moment leaves the previous checkpoint (or `checkpoint.old/`) loadable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from vaecli.errors import ModelDirError
from vaecli.files.atomic import atomic_save, atomic_write_bytes, disk_full, is_disk_full
from vaecli.modeling.layout import CHECKPOINT_DIR, CHECKPOINT_OLD, CHECKPOINT_TMP, OPTIMIZER_NAME, TRAINER_STATE_NAME
from vaecli.modeling.randomness import set_rng_states
from vaecli.modeling.vae import VAEModel


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(out: Path, model: VAEModel, optimizer: torch.optim.Optimizer, scheduler: Any, trainer: dict[str, Any],
                    rng: list[dict[str, torch.Tensor]]) -> Path:
    """Write the checkpoint aside, then rename it into place; `rng` holds each process's random streams (rng_states)."""
    from safetensors.torch import save_file

    final, tmp, old = out / CHECKPOINT_DIR, out / CHECKPOINT_TMP, out / CHECKPOINT_OLD
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        for index, states in enumerate(rng):
            tensors.update({f"rng.{name}.{index}": state for name, state in states.items()})
        atomic_save(tmp / OPTIMIZER_NAME, lambda path: save_file(tensors, path))
        state = {"trainer": trainer, "optimizer": meta, "scheduler": scheduler.state_dict()}
        atomic_write_bytes(tmp / TRAINER_STATE_NAME, (json.dumps(state, indent=1) + "\n").encode())
    except BaseException as e:  # a full disk, Ctrl-C: no half-written checkpoint.tmp left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full(tmp) from None
        raise
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint under `out`, if any."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_OLD):
        path = out / name
        if (path / TRAINER_STATE_NAME).is_file() and (path / OPTIMIZER_NAME).is_file():
            return path
    return None


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelDirError(f"checkpoint {path} is unreadable ({e}); start again with --overwrite") from None


def restore(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any], process: int = 0,
            device: torch.device = torch.device("cpu")) -> None:
    """Load optimizer moments, the LR schedule and this process's random streams saved in `path` (a GPU's on `device`
    where it is one)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path / OPTIMIZER_NAME))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    key = f"rng.torch.{process}"
    if key not in tensors:
        raise ModelDirError(f"checkpoint {path} was written by fewer processes; resume with the same number of processes")
    set_rng_states({name: tensors[f"rng.{name}.{process}"] for name in ("torch", "cuda") if f"rng.{name}.{process}" in tensors}, device)
