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

LOCK_NAME = ".lock"


class RunError(ValueError):
    """A run cannot start or go on; one line for stderr."""


def _json_has(path: Path, key: str, inner: str | None = None) -> bool:
    """Whether the JSON object in path (its first line for .jsonl) has key (and key has inner)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.readline() if path.suffix == ".jsonl" else f.read(1 << 20)
        data = json.loads(text)
        return isinstance(data, dict) and key in data and (inner is None or inner in data[key])
    except (OSError, ValueError, TypeError, RecursionError):
        return False


def is_run_dir(path: Path) -> bool:
    """Whether path holds a vaecli run or model directory: a file as `vae finetune` writes it
    (config.json with a "vae" part, training.json naming the vaecli version, metrics.jsonl records,
    a checkpoint). Names alone are not enough: a user's own config.json is not ours."""
    return (
        _json_has(path / "config.json", "vae")
        or _json_has(path / "training.json", "versions", "vaecli")
        or _json_has(path / "metrics.jsonl", "phase")
        or any(_json_has(path / name / "trainer_state.json", "trainer") for name in ("checkpoint", "checkpoint.old"))
    )


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_NAME]


class RunDir:
    """--out of one run: checked, locked, and (with --overwrite) cleared once the run can start."""

    def __init__(self, out: str | os.PathLike[str], resume: bool, overwrite: bool) -> None:
        """Check out against --resume / --overwrite and take its lock; nothing is removed here."""
        from vaecli.checkpoint import find_checkpoint

        self.path = path = Path(out)
        self.created = False
        self._lock: int | None = None
        if path.exists() and not path.is_dir():
            raise RunError(f"--out {path} is a file; choose a directory")
        if resume and find_checkpoint(path) is None:
            raise RunError(f"--resume: no checkpoint in {path}; start a new run without --resume")
        self.replace = False
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
