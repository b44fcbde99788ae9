"""Executors: run a task function over items and yield each outcome as it finishes.

`SerialExecutor` calls the function in this process, one item after the other; `DaskExecutor`
submits one task per item to a Dask cluster and yields them as they complete (the shape of
benchopt's `parallel_run`). `bench run` maps `bench.tasks.run_task` over the pending run specs,
`bench tune` maps `bench.tasks.tune_task` over shares of a study's trials; whoever consumes the
outcomes never knows which executor produced them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.tasks import PROGRESS_TOPIC


@dataclass
class Outcome:
    """One finished item: the task's return value, or the error that kept it from returning."""

    item: Any
    value: Any = None
    error: BaseException | None = None


class SerialExecutor:
    """Runs each task in this process, in order. Keyword arguments of `map` reach the task function
    (objects that cannot travel to a worker: the open tracker, an echo function, Optuna callbacks)."""

    in_process = True
    workers = 1

    def map(self, fn: Callable[..., Any], shared: Any, items: Iterable[Any], key: Callable[[Any], str] | None = None,
            **local: Any) -> Iterator[Outcome]:
        """fn(shared, item, **local) for each item; a task's exception propagates (a run records its own).
        `key` (a task name, for Dask) is not needed here."""
        for item in items:
            yield Outcome(item, fn(shared, item, **local))


class DaskExecutor:
    """Submits one task per item to the cluster of `client`; `shared` is sent to every worker once.

    `resources` (e.g. {'GPU': 1}) is asked for by every task. `on_event` receives the workers'
    progress events (a run started). A task that could not run (its worker lost too often) comes
    back as an Outcome with the error. Leaving the iteration early cancels what is left.
    """

    in_process = False

    def __init__(self, client: Any, resources: dict[str, int] | None = None,
                 on_event: Callable[[Any], None] | None = None) -> None:
        from bench.cluster import n_workers

        self.client = client
        self.resources = resources
        self.on_event = on_event
        self.workers = max(1, n_workers(client))

    def map(self, fn: Callable[..., Any], shared: Any, items: Iterable[Any], key: Callable[[Any], str] | None = None,
            **_local: Any) -> Iterator[Outcome]:
        """Submit fn(shared, item) per item and yield outcomes as they complete (keyword arguments
        other than `key`, a function naming each task, stay in this process and are ignored)."""
        from distributed import as_completed

        if self.on_event is not None:
            self.client.subscribe_topic(PROGRESS_TOPIC, self.on_event)
        remote = self.client.scatter(shared, broadcast=True, hash=False)
        futures = {self.client.submit(fn, remote, item, key=key(item) if key else None, resources=self.resources,
                                      pure=False): item for item in items}
        try:
            for fut in as_completed(futures):
                try:
                    yield Outcome(futures[fut], fut.result())
                except Exception as exc:  # noqa: BLE001 - the task could not run; the consumer decides
                    yield Outcome(futures[fut], error=exc)
        finally:
            for fut in futures:
                fut.cancel()
            if self.on_event is not None:
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(PROGRESS_TOPIC)
