"""A live progress bar for a generation run, read from the store's counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from generator.store import Store


class RunProgress:
    """prompts done / total, candidates stored, generated tokens per second, ETA."""

    def __init__(self, store: Store, run_id: str, console: Console) -> None:
        self.store, self.run_id = store, run_id
        self.started = time.monotonic()
        self.tokens_at_start = store.run_stats(run_id).get("completion_tokens", 0.0)
        self.progress = Progress(
            # markup=False: a run id is user input, and "[x]" in it must print, not vanish.
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "prompts · {task.fields[candidates]} candidates · {task.fields[rate]} tok/s",
                markup=False,
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(f"run {run_id}", total=None, candidates=0, rate="-")

    def refresh(self) -> tuple[int, int]:
        done, total = self.store.task_counts(self.run_id)
        stats = self.store.run_stats(self.run_id)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        tokens = stats.get("completion_tokens", 0.0) - self.tokens_at_start
        self.progress.update(
            self.task,
            completed=done,
            total=total or None,
            candidates=int(stats.get("candidates", 0)),
            rate=f"{tokens / elapsed:.1f}",
        )
        return done, total

    def watch(self, finished: Callable[[], bool], interval: float = 0.5) -> None:
        """Refresh until ``finished()`` says so (polling the store)."""
        with self.progress:
            while not finished():
                self.refresh()
                time.sleep(interval)
            self.refresh()

    def in_background(self, interval: float = 0.5) -> Callable[[], None]:
        """Refresh from a thread (the worker must own the main thread); returns a stop function."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.refresh()

        self.progress.start()
        thread = threading.Thread(target=loop, name="gapfill-progress", daemon=True)
        thread.start()

        def finish() -> None:
            stop.set()
            thread.join()
            self.refresh()
            self.progress.stop()

        return finish
