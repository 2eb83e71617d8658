"""The output directory of a `vae finetune` run: what may be replaced, and one run at a time.

Replacing (`--overwrite`) never costs data that vaecli did not write, and never costs the old run
for nothing:

* Only a directory that is empty or a vaecli run or model directory (RUN_MARKERS) is replaced; any
  other non-empty directory is refused, so `--out ~/thesis --overwrite` cannot erase a thesis.
* The old contents are removed only by `clear`, which the trainer calls after every check that can
  fail before training (options, model, training and validation files, the lock) has passed. A
  typo in `--model` or a missing corpus leaves the old run as it was. (Training into a sibling
  directory and swapping it in at the end would keep the old run until the new one is complete, but
  it doubles the disk a run needs and breaks `--resume` of an interrupted replacement; the first
  checkpoint of the new run follows within `--save-every` steps.)

A run holds an exclusive `fcntl.flock` on `DIR/.lock` from its checks to its end: a second run
into the same directory is refused at once instead of both writing the same files. The kernel
drops the lock when the process dies, however it dies, so a killed run never leaves it stuck. The
lock file itself stays (unlinking a lock file others may have opened would let two runs in).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from vaecli.errors import RunError
from vaecli.files.atomic import atomic_write_bytes, disk_full, is_disk_full
from vaecli.files.text import read_records
from vaecli.modeling.layout import (
    CHECKPOINT_DIR,
    CHECKPOINT_OLD,
    LOCK_NAME,
    METRICS_NAME,
    PHASE1_DIR,
    PRIOR_NAME,
    TRAINER_STATE_NAME,
    TRAINING_NAME,
    WEIGHTS_NAME,
    is_model_dir,
    json_has,
)


def is_run_dir(path: Path) -> bool:
    """Whether path holds a vaecli run or model directory: a file as `vae finetune` writes it
    (config.json with a "vae" part, training.json naming the vaecli version, metrics.jsonl records,
    a checkpoint). Names alone are not enough: a user's own config.json is not ours."""
    return (
        is_model_dir(path)
        or json_has(path / TRAINING_NAME, "versions", "vaecli")
        or json_has(path / METRICS_NAME, "phase")
        or any(json_has(path / name / TRAINER_STATE_NAME, "trainer") for name in (CHECKPOINT_DIR, CHECKPOINT_OLD))
    )


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_NAME]


class RunDir:
    """--out of one run: checked, locked, (with --overwrite) cleared once the run can start; and the owner
    of the files a run writes there besides checkpoints: metrics.jsonl, training.json, the kept model.

    In the other processes of a multi-process run (`main=False`) it checks nothing and writes nothing.
    """

    def __init__(self, out: str | os.PathLike[str], resume: bool, overwrite: bool, main: bool = True) -> None:
        """Check out against --resume / --overwrite and take its lock; nothing is removed here."""
        from vaecli.training.checkpoint import find_checkpoint

        self.path = path = Path(out)
        self.main = main
        self.created = False
        self.replace = False
        self._lock: int | None = None
        if not main:
            return
        if path.exists() and not path.is_dir():
            raise RunError(f"--out {path} is a file; choose a directory")
        if resume and find_checkpoint(path) is None:
            raise RunError(f"--resume: no checkpoint in {path}; start a new run without --resume")
        if not resume and path.is_dir() and _contents(path):
            if not overwrite:
                raise RunError(f"{path} already exists; pass --resume to continue it or --overwrite to replace it")
            if not is_run_dir(path):
                raise RunError(f"--overwrite: {path} is not a vaecli run or model directory; refusing to delete it (choose another --out)")
            self.replace = True
        self.created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create --out {path}: {e.strerror or e}") from None
        self._take_lock()

    def _take_lock(self) -> None:
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise RunError(f"{self.path} is in use by another `vae finetune`{who}; wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def clear(self) -> None:
        """Remove the replaced run's contents (--overwrite): call once every check has passed."""
        if not self.replace:
            return
        for entry in _contents(self.path):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.replace = False

    def release(self, failed: bool = False) -> None:
        """Drop the lock; after a failed start, remove the directory again if this run created it."""
        if self._lock is None:
            return
        if failed and self.created and not _contents(self.path):
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            self.path.rmdir()
        os.close(self._lock)
        self._lock = None

    # -- the files a run writes ----------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (a torn last line is dropped on --resume: trim_metrics)."""
        if not self.main:
            return
        path = self.path / METRICS_NAME
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            if is_disk_full(e):
                raise disk_full(path) from None
            raise

    def trim_metrics(self, phase: int, step: int) -> None:
        """Drop records written after the checkpoint at (phase, step), so a resumed run's metrics.jsonl has no
        repeats. A line that does not parse (the torn tail a kill during the append leaves) is dropped too:
        it can only be the last record, and the resumed run writes it again."""
        path = self.path / METRICS_NAME
        if not self.main or not path.exists():
            return
        keep = [r for r in read_records(path) if (r.get("phase", 0), r.get("step", 0)) <= (phase, step)]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode("utf-8"))

    def save_model(self, model: Any, phase1: bool = False) -> None:
        """The kept model (or, phase1=True, the end of phase 1) as a model directory; a failed write leaves no
        temporary weights behind, and a full disk is one OSError(ENOSPC) naming the weights file."""
        if not self.main:
            return
        directory = self.path / PHASE1_DIR if phase1 else self.path
        (directory / PRIOR_NAME).unlink(missing_ok=True)  # fitted to other weights: refitted at the end of the run
        try:
            model.save_pretrained(directory)
        except BaseException as e:
            (directory / (WEIGHTS_NAME + ".tmp")).unlink(missing_ok=True)
            if is_disk_full(e):
                raise disk_full(directory / WEIGHTS_NAME) from None
            raise

    def save_prior(self, prior: Any) -> None:
        """The aggregate posterior of the kept model (modeling.prior), beside its weights."""
        if self.main:
            prior.save(self.path / PRIOR_NAME)

    def write_training(self, record: dict[str, Any]) -> None:
        """training.json: the run's resolved settings, seed and versions."""
        if self.main:
            atomic_write_bytes(self.path / TRAINING_NAME, (json.dumps(record, indent=2) + "\n").encode())
