"""Wall-clock time per pipeline stage, so the demo can show where its minutes go."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class StageTimer:
    """Times named stages (``with timer.stage("fit"):``) and announces each one as it starts and ends."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.console.rule(f"[bold]{name}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start
            self.console.print(f"[dim]{name}: {self.seconds[name]:.1f} s[/dim]")

    @property
    def total(self) -> float:
        return sum(self.seconds.values())
