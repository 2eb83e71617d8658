"""Stopping a run cleanly: the first Ctrl-C or SIGTERM asks the loop to checkpoint and stop."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StopFlag:
    """Set by the first Ctrl-C (SIGINT) or a SIGTERM (cluster pre-emption, torchrun passing on a
    Ctrl-C); the loop checkpoints and stops at the next step boundary. A second SIGINT stops at once."""

    requested: bool = False
    previous: dict[int, Any] = field(default_factory=dict, repr=False)

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, Ctrl-C raises as usual
                return

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
