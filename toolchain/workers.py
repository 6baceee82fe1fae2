"""One interface for independent candidate evaluations: in-process, or Ray workers (docs/scale-out.md).

    with make_evaluator(workers=2) as ev:            # or ray_address="ray://head:10001", or neither
        results = ev.map(score_one, candidates, state=(model, recipe, data))

`fn(state, item)` must be a module-level function (Ray ships it by reference); `state` is shipped
once per worker per `map`; results come back in the order of `items`, so a reduction over them is
the serial loop's. Without workers and without an address nothing starts and Ray is not imported.
In full: docs/scale-out.md, "The interface".
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from toolchain.errors import MtedgeError, SpecError
from toolchain.progress import console, progress_bar

EvalFn = Callable[[Any, Any], Any]


class Evaluator(Protocol):
    """Maps an evaluation over candidates; results in the candidates' order."""

    workers: int
    incidents: list[str]

    def map(self, fn: EvalFn, items: Sequence[Any], state: Any = None, description: str = "evaluating") -> list[Any]: ...

    def close(self) -> None: ...


class _ContextMixin:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SerialEvaluator(_ContextMixin):
    """In-process evaluation, one candidate after another (the default; no Ray)."""

    workers: int = 1
    incidents: list[str] = field(default_factory=list)

    def map(self, fn: EvalFn, items: Sequence[Any], state: Any = None, description: str = "evaluating") -> list[Any]:
        with progress_bar(transient=True) as progress:
            return [fn(state, item) for item in progress.track(items, description=description)]

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor: holds the current state (deserialized once per `map`) and evaluates items on it."""

    def __init__(self, threads: int | None) -> None:
        self.threads, self.token, self.state = threads, None, None

    def load(self, token: int, state: Any) -> int:
        self.token, self.state = token, state
        self._pin_threads()
        return os.getpid()

    def run(self, token: int, fn: EvalFn, item: Any) -> Any:
        if token != self.token:  # a replacement worker that never got this map's state
            raise RuntimeError(f"worker holds state {self.token}, task wants {token}")
        self._pin_threads()
        return fn(self.state, item)

    def _pin_threads(self) -> None:
        # one torch thread per worker unless told otherwise: N workers share N cores without oversubscribing
        if self.threads and "torch" in sys.modules:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)


class RayEvaluator(_ContextMixin):
    """Evaluations as Ray actor tasks: a pool of `workers` actors, state shipped once per worker.

    `address` joins an existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); without it a
    local Ray instance with `workers` CPUs is started and shut down by :meth:`close`. Retries of lost
    workers and failed evaluations (`retries`, `incidents`): docs/scale-out.md, "The interface"."""

    def __init__(self, workers: int | None = None, address: str | None = None, threads: int | None = 1,
                 retries: int = 2, object_store_mb: int | None = 512) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - ray is a dependency
            raise MtedgeError(f"--workers/--ray-address need Ray ({e}); pip install 'ray==2.60.0'") from None
        self._ray = ray
        self.threads, self.retries = threads, retries
        self.incidents: list[str] = []
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                # Ray starts workers at nice 15; here they do the job's main work, so they run at the
                # driver's priority (on a shared machine nice 15 starves them behind everything else)
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=workers, object_store_memory=(object_store_mb or 0) * 2**20 or None, **kwargs)
            self._owns = True
        self.workers = int(workers or ray.cluster_resources().get("CPU", 1))
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        self._tokens = itertools.count(1)
        self._token = 0
        self._state_ref = self._state_obj = None

    def _new_actor(self):
        return self._actor_cls.remote(self.threads)

    def _replace(self, index: int) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._ray.kill(self._actors[index])
        self._actors[index] = self._new_actor()
        self._actors[index].load.remote(self._token, self._state_ref)

    def map(self, fn: EvalFn, items: Sequence[Any], state: Any = None, description: str = "evaluating") -> list[Any]:
        ray = self._ray
        items = list(items)
        if state is not self._state_obj or self._state_ref is None:
            # a new state: one copy in the object store, each worker fetches it once; the same
            # object again (a search judging a probe at a time) stays where it is
            self._token = next(self._tokens)
            self._state_obj, self._state_ref = state, ray.put(state)
            for actor in self._actors:
                actor.load.remote(self._token, self._state_ref)
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        queue = list(reversed(range(len(items))))  # pop() hands out items in order
        idle = list(range(len(self._actors)))
        pending: dict[Any, tuple[int, int]] = {}  # object ref -> (actor index, item index)
        with progress_bar(transient=True) as progress:
            job = progress.add_task(description, total=len(items))
            while queue or pending:
                while queue and idle:
                    a, i = idle.pop(0), queue.pop()
                    pending[self._actors[a].run.remote(self._token, fn, items[i])] = (a, i)
                progress.update(job, description=f"{description} [{len(pending)}/{self.workers} workers busy]")
                ref = ray.wait(list(pending), num_returns=1)[0][0]
                a, i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as e:
                    self._retry(i, attempts, items, f"worker {a} lost ({type(e).__name__}) while evaluating item {i}")
                    self._replace(a)
                    queue.append(i)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    self._retry(i, attempts, items, f"item {i} failed on worker {a}: {type(cause).__name__}: {cause}",
                                cause)
                    queue.append(i)
                else:
                    progress.update(job, advance=1)
                idle.append(a)
        return results

    def _retry(self, i: int, attempts: list[int], items: list[Any], message: str, cause: BaseException | None = None) -> None:
        attempts[i] += 1
        if attempts[i] > self.retries:
            self.incidents.append(message)
            raise MtedgeError(f"evaluation of item {i} ({_short(items[i])}) failed {attempts[i]} times; last: {message}. "
                              f"Fix the cause, or raise the retry limit if workers are being lost") from cause
        self.incidents.append(f"{message}; attempt {attempts[i] + 1} of {self.retries + 1}")
        console.print(f"[yellow]retry:[/yellow] {self.incidents[-1]}")

    def close(self) -> None:
        ray = self._ray
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)
        self._actors = []
        self._state_obj = self._state_ref = None
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False


def _short(item: Any, limit: int = 80) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_evaluator(workers: int | None = None, ray_address: str | None = None, threads: int | None = 1,
                   retries: int = 2) -> SerialEvaluator | RayEvaluator:
    """In-process without `workers` and `ray_address` (Ray not imported); otherwise a Ray pool."""
    if workers is not None and workers < 0:
        raise SpecError(f"--workers {workers} must be >= 1 (or left out for in-process evaluation)")
    if not workers and not ray_address:
        return SerialEvaluator()
    return RayEvaluator(workers=workers or None, address=ray_address, threads=threads, retries=retries)

