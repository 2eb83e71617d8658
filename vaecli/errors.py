"""Every error a user may see, and the exit code it ends a command with.

`str(error)` is one line for stderr that says what is wrong and what to do next. The CLI maps an
error to its exit code by type (`exit_code`), so a rule that refuses something raises one of these
wherever it is checked, and the code is the same from every command. Anything else that escapes is
a bug and keeps its traceback. This module imports nothing, so the CLI can catch these before
torch loads.
"""

from __future__ import annotations

EXIT_ERROR = 1
"""The command could not do its work: a missing or broken model directory, a run that cannot go on."""
EXIT_INPUT = 2
"""Bad input or options: nothing was written."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it)."""


class VaeError(Exception):
    """Base of the user-facing errors."""

    exit_code = EXIT_ERROR
    prefix = "error: "
    """What the CLI prints before the message."""


class InputError(VaeError, ValueError):
    """Bad user input: a file, an argument, stdin, an option value."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """One or more settings are invalid; the message lists all of them on one line."""


class VectorSizeError(InputError):
    """Vectors whose size is not the model's latent size."""


class ModelDirError(VaeError, ValueError):
    """A model directory (or a backbone to build one from) is missing, incomplete or inconsistent."""


class RunError(VaeError, ValueError):
    """A training run cannot start or go on (its --out, its checkpoint, a diverged loss)."""


class Interrupted(VaeError):
    """Stopped by Ctrl-C (or SIGTERM) after writing a checkpoint."""

    exit_code = EXIT_INTERRUPTED
    prefix = ""

    def __init__(self, checkpoint: object) -> None:
        super().__init__(f"interrupted; checkpoint saved in {checkpoint}; continue with --resume")
        self.checkpoint = checkpoint
