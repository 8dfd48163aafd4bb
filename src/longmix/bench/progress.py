"""A progress bar for the benchmarks (rich), or nothing when disabled.

Example::

    >>> with Progress(2, enabled=False, title="demo") as bar:
    ...     bar.step("first"); bar.step("second")
"""
from __future__ import annotations


class Progress:
    """``step(description)`` before each job; the bar shows done/total, elapsed and remaining time."""

    def __init__(self, total: int, *, enabled: bool = True, title: str = ""):
        self.p, self.started, self.title = None, False, title
        if enabled and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn, TimeRemainingColumn

            self.p = RichProgress(TextColumn(f"[bold]{title}[/] {{task.description:<44}}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            self.task = self.p.add_task("", total=total)

    def __enter__(self):
        if self.p is not None:
            self.p.start()
        return self

    def step(self, description: str):
        if self.p is not None:
            if self.started:
                self.p.advance(self.task)
            self.p.update(self.task, description=description)
        self.started = True

    def __exit__(self, *exc):
        if self.p is not None:
            if self.started and exc[0] is None:
                self.p.advance(self.task)
            self.p.stop()
        return False
