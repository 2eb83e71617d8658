"""Progress on stderr: a rich bar on a terminal, plain lines at a steady pace otherwise (a pipe, a log, CI)."""

from __future__ import annotations

from typing import Any


def number(value: float | None, digits: int = 3) -> str:
    """A metric for a progress line: n/a when it could not be computed (one sentence has no MI, AU or gap)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def kept_text(kept: dict[str, Any]) -> str:
    """Which validation the saved weights are: the best validation Rec (vaecli.training.diagnose.keep_score)."""
    return (f"phase {kept['phase']} step {kept['step']}, the best validation rec ({kept['rec']:.3f}; kl {kept['kl']:.3f} "
            f"au {number(kept['au'], 0)}/{kept['dims']} mi {number(kept['mi'])} gap {number(kept['gap'])} token accuracy {kept['acc']:.3f})")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


PROGRESS_EVERY_S = 30.0  # off a terminal, one progress line per this many seconds (and the first step)


class Reporter:
    """Training events -> a rich progress bar on a terminal, plain lines otherwise (both on stderr).

    Off a terminal (a pipe, a log, CI) a progress line is printed at each phase's first step and
    then every `every` seconds of `clock`, however long a step takes.
    """

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Any = None) -> None:
        import time

        self.every = every
        self.clock = clock or time.monotonic
        self.last_line: float | None = None
        self.kept: dict[str, Any] | None = None

    def __enter__(self) -> Reporter:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self.progress = None
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("phase {task.fields[phase]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console,
            )
            self.progress.start()
        self.task = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "data":
            self.console.print(
                f"{event['train']} training / {event['valid']} validation sentences; "
                f"{event['blank']} blank line(s) skipped, {event['truncated']} truncated to --max-length"
            )
        elif kind == "phase":
            self.last_line = None
            if self.progress is not None:
                self.task = self.progress.add_task("", total=event["total"], completed=event["start"], phase=event["phase"], stats="")
        elif kind == "step" and self.progress is not None and self.task is not None:
            stats = f"rec {event['rec']:.2f} kl {event['kl']:.2f} beta {event['beta']:.2f} {event['steps_per_s']:.2f} steps/s"
            self.progress.update(self.task, completed=event["step"], total=event["total"], stats=stats)  # a re-timed phase's new total
        elif kind == "step" and self.progress is None:
            now = self.clock()
            if self.last_line is None or now - self.last_line >= self.every:
                self.last_line = now
                rate = event["steps_per_s"]
                eta = duration((event["total"] - event["step"]) / rate) if rate > 0 else "?"
                self.console.print(
                    f"phase {event['phase']} step {event['step']}/{event['total']}: rec {event['rec']:.2f} kl {event['kl']:.2f} "
                    f"beta {event['beta']:.2f}, {rate:.2f} steps/s, ETA {eta}"
                )
        elif kind == "valid":
            mark = " (best, saved)" if event["best"] else ""
            self.console.print(
                f"phase {event['phase']} step {event['step']}: valid rec {event['rec']:.3f} kl {event['kl']:.3f} "
                f"-elbo {event['elbo']:.3f} au {number(event['au'], 0)}/{event['dims']} mi {number(event['mi'])} gap {number(event['gap'])} "
                f"acc {event['acc']:.3f}{mark}"
            )
        elif kind == "kept":
            self.kept = event
        elif kind == "message":
            self.console.print(event["text"])


class StageProgress:
    """`vae evaluate`'s progress(stage, done, total) on stderr: a rich bar per stage on a terminal;
    otherwise a line at each stage's first report, then every `every` seconds of `clock`."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Any = None) -> None:
        import time

        self.every = every
        self.clock = clock or time.monotonic
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.last_line: float | None = None
        self.mark = self.clock()  # the last report of any stage: where the next stage began

    def __enter__(self) -> StageProgress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self.progress = None
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("sentences"),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.progress.add_task(stage, total=total)
            self.progress.update(self.tasks[stage], completed=done)
            return
        now, begun = self.clock(), self.mark
        self.mark = now
        first = stage not in self.started
        if first:
            self.started[stage] = begun
        if first or now - (self.last_line or now) >= self.every:
            self.last_line = now
            elapsed = now - self.started[stage]
            eta = f", ETA {duration(elapsed / done * (total - done))}" if elapsed > 0 and 0 < done < total else ""
            self.console.print(f"evaluate: {stage} {done}/{total} sentences{eta}")
