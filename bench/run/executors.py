"""Where cells run: in this process (``local``) or on a Dask cluster (``dask``).

An executor takes picklable cell tasks and yields ``(task, outcome)`` pairs as cells finish, in any order.
Workers only compute and return records; the driver (``segbench.run.runner.run``) is the single writer of the
run folder. A worker that dies is reported as a failed outcome, so the driver can retry the cell or record
the failure and let the rest of the grid finish.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, Protocol, TypeVar

from segbench.registry import import_modules

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "make_executor"]

Task = TypeVar("Task")
Outcome = TypeVar("Outcome")


class Executor(Protocol):
    name: str
    #: Whether cells run at the same time (then no cell times its latency: the runner times it afterwards).
    parallel: bool

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any], on_lost: Callable[[Any, BaseException], Any]
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(task, fn(task))`` as each finishes; ``on_lost(task, error)`` stands in for a lost worker."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs cells on this machine: one after another in this process (``workers=1``, the default; simplest to
    debug), or ``workers`` at a time, each in its own process (started clean, ``spawn``), every cell at the
    threads its task says, so N workers use N x threads cores.

    Args:
        workers: Cells at a time.
        preload: Modules every worker process imports first (``--import``: where your own methods register).
    """

    name = "local"

    def __init__(self, *, workers: int | None = None, preload: list[str] | None = None, **_: Any) -> None:
        self.workers = max(1, workers or 1)
        self.preload = list(preload or [])
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def map_unordered(self, fn, tasks, on_lost):
        if not self.parallel:
            for task in tasks:
                yield task, fn(task)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_import_all, initargs=(self.preload,))
        futures = {self._pool.submit(fn, task): task for task in tasks}
        broken = False
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # the process died (BrokenProcessPool) or the result could not travel
                broken |= isinstance(exc, BrokenProcessPool)
                yield futures[future], on_lost(futures[future], exc)
        if broken:  # a dead process breaks the pool: start a new one for the retries
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


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
    parallel = True

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
        if scheduler:
            self._cluster = None
            self.client = Client(scheduler)
        else:
            # No distributed ``preload=``: it imports a .py file under its own module name, so our import of
            # the same file (unpickling a task) registered its methods a second time and the worker died.
            self._cluster = LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                env={"OMP_NUM_THREADS": str(self.threads)},
            )
            self.client = Client(self._cluster)
        if preload:  # every worker, present and joining later, imports the modules once (import_modules)
            self.client.register_plugin(_imports_plugin(list(preload)), name="segbench-imports")

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


def _imports_plugin(modules: list[str]) -> Any:
    """A Dask worker plugin whose ``setup`` imports the user's modules on each worker (once: ``import_modules``
    skips what is imported). Defined here because distributed is an optional dependency."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Imports(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            _import_all(modules)

    return Imports()


def make_executor(kind: Literal["local", "dask"], **options: Any) -> Executor:
    if kind == "local":
        return LocalExecutor(**options)
    if kind == "dask":
        return DaskExecutor(**options)
    raise ValueError(f"unknown executor {kind!r}; choose local or dask")
