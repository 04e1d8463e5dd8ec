"""Where cells run: in this process (``local``) or on a Dask cluster (``dask``).

An executor takes picklable cell tasks and yields ``(task, outcome)`` pairs as cells finish, in any order.
Workers only compute and return records; the driver (``segbench.run.runner.run``) is the single writer of the
run folder. A worker that dies is reported as a failed outcome, so the driver can retry the cell or record
the failure and let the rest of the grid finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, Protocol, TypeVar

from segbench.registry import import_modules

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "make_executor"]

Task = TypeVar("Task")
Outcome = TypeVar("Outcome")


class Executor(Protocol):
    name: str

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any], on_lost: Callable[[Any, BaseException], Any]
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(task, fn(task))`` as each finishes; ``on_lost(task, error)`` stands in for a lost worker."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs cells one after another in this process (the default; simplest to debug)."""

    name = "local"

    def map_unordered(self, fn, tasks, on_lost):
        for task in tasks:
            yield task, fn(task)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Runs cells on dask.distributed: a ``LocalCluster`` of processes, or a running cluster's scheduler.

    Args:
        scheduler: ``tcp://host:port`` of a running scheduler; None starts a LocalCluster.
        workers: LocalCluster worker processes (default: one per two cores, at least 2).
        threads_per_worker: torch/BLAS threads each cell may use on a LocalCluster worker, so that workers
            do not oversubscribe the cores (default: cores // workers).
        preload: modules every worker imports before running cells (where your own methods register).
    """

    name = "dask"

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        threads_per_worker: int | None = None,
        preload: list[str] | None = None,
    ) -> None:
        try:  # an optional dependency (segbench[dask]): imported only when asked for
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise ValueError("the dask executor needs dask.distributed: pip install 'segbench[dask]'") from exc
        cores = os.cpu_count() or 1
        self.workers = workers or max(2, cores // 2)
        self.threads = threads_per_worker or max(1, cores // self.workers)
        preload = list(preload or [])
        if scheduler:
            self._cluster = None
            self.client = Client(scheduler)
            if preload:
                self.client.run(_import_all, preload)
        else:
            self._cluster = LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                env={"OMP_NUM_THREADS": str(self.threads)}, preload=preload,
            )
            self.client = Client(self._cluster)

    def map_unordered(self, fn, tasks, on_lost):
        from dask.distributed import as_completed  # optional dependency, as above

        # pure=False: a retried cell must run again, not return the cached result of its failed attempt
        futures = {self.client.submit(fn, task, pure=False, retries=0): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                yield task, future.result()
            except Exception as exc:  # the worker died (KilledWorker) or the result could not travel
                yield task, on_lost(task, exc)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def _import_all(modules: list[str]) -> None:
    import_modules(modules)  # module names found from the worker's current folder, or .py paths


def make_executor(kind: Literal["local", "dask"], **options: Any) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "dask":
        return DaskExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}; choose local or dask")
