"""A stopwatch for the named stages of one piece of work (a job's run, an HTTP request)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """`with timer("detect"): ...` adds the block's wall time to that stage; `as_ms()` reports them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def as_ms(self) -> dict[str, float]:
        return {stage: round(seconds * 1000, 2) for stage, seconds in self.seconds.items()}
