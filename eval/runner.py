"""The batch runner: solve a split into a run folder, resumably, surviving kill -9 at any moment.

A run folder (`runs/NAME/`) holds:
- `config.yaml`: the run's Config (loadable with `--config`, so a run can be repeated);
- `run.json`: which items (dataset, split or file) and a log of every invocation;
- `predictions.jsonl`: one line per item, appended as each batch completes;
- `permutations.jsonl`: predictions on permuted copies (`--permute`, `--debias`), same format;
- `metrics.json`, `report.md`, `report.html`: written by the report step at the end.

Crash safety comes from three rules. Each prediction is one `write()` of one whole line, flushed
(and the file fsynced after each batch), so a kill leaves at most one torn last line. Opening the
log drops a torn last line (truncating the file to its last newline) before anything is appended.
And an item is solved only if its id is not in the log when the run starts, so nothing is solved
twice or lost: a resumed run ends with exactly the lines an uninterrupted run writes.

A backend error on a batch is retried; if it persists, each item of the batch is tried alone once
(so one bad item does not sink its batch mates), and what still fails is recorded as a Prediction
with `error` set (mcqa.solve's `solve_batches`, the loop the Kaggle run uses too). Those count as
done (the file stays one line per item); `--retry-errors` drops them from the log and solves them again.

On Ray (`--ray`, mcqa.eval.ray_pool) the solver is a pool of replicas that solve several batches at
once; their predictions come back here and this process alone appends them, so all of the above holds
(lines come in completion order, not item order).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from mcqa.config import Config
from mcqa.solve import (
    Solver,
    read_predictions,
    solve_batches,
    solve_with_retries,  # noqa: F401 - where the runner's callers and tests find it
    write_jsonl,
)
from mcqa.types import Item, Prediction

# Config keys that change how fast a run goes, never what it answers: a resumed run may change them.
SPEED_ONLY = frozenset({"llm.n_threads", "llm.prompt_cache_mb", "agent.batch_size"})


class RunError(ValueError):
    """A run folder that cannot be used as asked (another config, a corrupt log, locked)."""


# --- the prediction log -----------------------------------------------------------------------------


class PredictionLog:
    """An append-only JSON-lines file of predictions, one line per item id.

    Opening it reads what is done and cuts a torn last line off the file (`repair=False` only skips
    it, for readers such as `compare` that must not touch a run that may still be going). Reading
    and appending are mcqa.solve's `read_predictions` and `write_jsonl`.
    """

    def __init__(self, path: Path, repair: bool = True):
        self.path = Path(path)
        self.done: dict[str, Prediction] = {}
        self.dropped_bytes = 0
        self._load(repair)

    def _load(self, repair: bool) -> None:
        if not self.path.exists():
            return
        try:
            predictions, good_end = read_predictions(self.path)
        except ValueError as exc:
            raise RunError(f"{exc}; delete that line or start over with --force") from None
        for prediction in predictions:
            self.done.setdefault(prediction.item_id, prediction)
        self.dropped_bytes = self.path.stat().st_size - good_end
        if self.dropped_bytes and repair:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())

    def pending(self, items: list[Item]) -> list[Item]:
        return [item for item in items if item.id not in self.done]

    def append(self, predictions: list[Prediction]) -> None:
        """Append one whole line per prediction, then fsync: a kill tears at most the line being written."""
        for prediction in write_jsonl(self.path, predictions, fsync=True):
            self.done[prediction.item_id] = prediction

    def drop_errors(self) -> int:
        """Rewrite the log without its error records (atomically), so those items are solved again."""
        errors = [k for k, p in self.done.items() if p.error is not None]
        if errors:
            for key in errors:
                del self.done[key]
            atomic_write(
                self.path, "".join(p.model_dump_json(exclude_defaults=True) + "\n" for p in self.done.values())
            )
        return len(errors)


def atomic_write(path: Path, text: str) -> None:
    """Write `path` so that a reader (or a kill) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass
class RunStats:
    """What one invocation did (the report's throughput figures)."""

    already_done: int = 0
    solved: int = 0
    errors: int = 0
    failed_calls: int = 0  # solver calls that raised, each followed by a retry or the batch tried item by item
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.solved / self.seconds if self.seconds else 0.0


class BackendDown(RuntimeError):
    """Several batches in a row failed on every item: the backend is down or misconfigured, so the
    run stops instead of recording an error against every remaining item."""


def run_items(
    solver: Solver,
    items: list[Item],
    log: PredictionLog,
    batch_size: int = 8,
    retries: int = 2,
    on_progress: Callable[[int], None] | None = None,
    backoff: float = 1.0,
    stats: RunStats | None = None,
    max_failed_batches: int = 3,
) -> RunStats:
    """Solve the items not yet in `log`, batch by batch, appending each batch as it completes.

    A batch whose every item failed is held back, not written, until a later batch succeeds (then
    it is recorded: the failure was that batch's) or until `max_failed_batches` such batches in a
    row raise BackendDown (then nothing of them is recorded, and a resumed run tries them again).
    """
    stats = stats or RunStats()
    if getattr(solver, "map_batches", None) is None:  # (on Ray the replicas retry; their failures are not seen here)
        solver = _counting_failures(solver, stats)
    pending = log.pending(items)
    stats.already_done += len(items) - len(pending)
    started = time.perf_counter()
    held: list[list[Prediction]] = []

    def record(predictions: list[Prediction]) -> None:
        log.append(predictions)
        stats.solved += len(predictions)
        stats.errors += sum(p.error is not None for p in predictions)

    try:
        for predictions in solve_batches(solver, pending, batch_size, retries, backoff):
            if all(p.error is not None for p in predictions):
                held.append(predictions)
                if len(held) >= max_failed_batches:
                    raise BackendDown(
                        f"{len(held)} batches in a row failed on every item ({predictions[0].error}); "
                        "stopped without recording them, so a resumed run tries them again"
                    )
            else:
                for failed in held:
                    record(failed)
                held.clear()
                record(predictions)
            if on_progress:
                on_progress(len(predictions))
        for failed in held:  # the run ended on failed batches: they are this run's errors
            record(failed)
    finally:
        stats.seconds += time.perf_counter() - started
    return stats


def _counting_failures(solver: Solver, stats: RunStats) -> Solver:
    """The solver, counting in `stats.failed_calls` each call that raised (solve_with_retries retries it)."""

    def counted(batch: list[Item]) -> list[Prediction]:
        try:
            return solver(batch)
        except Exception:
            stats.failed_calls += 1
            raise

    return counted


# --- the run folder ---------------------------------------------------------------------------------


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(old: dict, new: dict, ignore: frozenset = SPEED_ONLY) -> list[str]:
    """'key: old -> new' for every setting that differs (speed-only keys aside).

    A key the old config lacks (the run was made before the setting existed) differs only when the
    new value is not the setting's default: a new setting's default keeps the old behaviour."""
    a, b = _flatten(old), _flatten(new)
    defaults = _flatten(Config().model_dump(mode="json"))
    return [
        f"{key}: {a.get(key, '(unset)')!r} -> {b.get(key, '(unset)')!r}"
        for key in sorted(set(a) | set(b))
        if key not in ignore
        and a.get(key) != b.get(key)
        and not (key not in a and key in defaults and b.get(key) == defaults[key])
    ]


@dataclass
class RunDir:
    """The files of one run folder, and the checks that keep a resumed run the same run."""

    path: Path
    owned: tuple[str, ...] = field(
        default=(
            "config.yaml",
            "run.json",
            "predictions.jsonl",
            "permutations.jsonl",
            "metrics.json",
            "pride.json",
            "report.md",
            "report.html",
            "traces.sqlite",
            "traces.sqlite-wal",
            "traces.sqlite-shm",
        ),
        repr=False,
    )

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._lock = None

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def predictions(self) -> Path:
        return self.file("predictions.jsonl")

    @property
    def permutations(self) -> Path:
        return self.file("permutations.jsonl")

    def lock(self) -> None:
        """Hold an exclusive lock for this process's life: two runs appending to one log would
        duplicate work. The OS frees it when the process dies, kill -9 included."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            return
        handle = open(self.file(".lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunError(f"another `mcqa eval run` is writing to {self.path}") from None
        self._lock = handle

    def unlock(self) -> None:
        """Release the lock (a notebook evaluating the same folder again in one process takes it anew)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def clear(self) -> None:
        """--force: remove what a run wrote (nothing else in the folder)."""
        for name in self.owned:
            self.file(name).unlink(missing_ok=True)

    def read_meta(self) -> dict:
        path = self.file("run.json")
        return json.loads(path.read_text()) if path.exists() else {}

    def stored_config(self) -> dict | None:
        path = self.file("config.yaml")
        return yaml.safe_load(path.read_text()) if path.exists() else None

    def check(self, config: Config, source: dict, models: dict | None = None, accept: bool = False) -> list[str]:
        """Refuse to resume a run with other settings, other items or other model files: its predictions
        would mix. `config` is the resolved config (`Config.for_dataset`), compared with the stored one, so
        a by-dataset default that changed since the run began is a difference too; `models` are the
        checksums of `mcqa.provenance.model_checksums`. With `accept`, the differences are returned
        instead (the caller records them and the run goes on under the new config)."""
        stored = self.stored_config()
        if stored is None:
            if self.predictions.exists() and self.predictions.stat().st_size:
                raise RunError(
                    f"{self.path} has predictions but no config.yaml: use another --out, or --force to start over"
                )
            return []
        differences = config_differences(stored, config.model_dump(mode="json"))
        meta = self.read_meta()
        old_source = meta.get("source")
        if old_source is not None:  # (a kill between writing config.yaml and run.json leaves none)
            differences += [
                f"{key}: {old_source.get(key)!r} -> {source.get(key)!r}"
                for key in sorted(set(old_source) | set(source))
                if old_source.get(key) != source.get(key)
            ]
        old_models = (meta.get("provenance") or {}).get("models") or {}
        for role in sorted(set(old_models) & set(models or {})):
            if old_models[role]["sha256"] != models[role]["sha256"]:
                differences.append(
                    f"model {role} ({models[role]['name']}): sha256 {old_models[role]['sha256'][:12]} -> "
                    f"{models[role]['sha256'][:12]}"
                )
        if differences and not accept:
            listed = "".join(f"\n  {d}" for d in differences)
            raise RunError(
                f"{self.path} was run with other settings, items or models:{listed}\nResume it with --config "
                f"{self.file('config.yaml')} and the same dataset and split, use another --out, pass "
                "--accept-changes to go on under the new settings (the differences are recorded in run.json), "
                "or --force to start over (its predictions are deleted)"
            )
        return differences

    def start(self, config: Config, source: dict, provenance: dict | None = None, changes: list[str] = ()) -> None:
        """Write config.yaml and run.json (atomically) before the first prediction is appended.

        config.yaml is the resolved config; run.json the source of the items and the provenance of
        the first invocation (version, commit, model checksums). Accepted `changes` rewrite
        config.yaml to the new config and are kept in run.json's `changes`."""
        if changes or not self.file("config.yaml").exists():
            atomic_write(self.file("config.yaml"), yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        meta = self.read_meta()
        if not meta:
            meta = {"source": source, "created": _now(), "provenance": provenance, "invocations": []}
        if changes:
            meta.setdefault("changes", []).append({"at": _now(), "differences": list(changes)})
            if provenance is not None:
                meta["provenance"] = provenance
        self.write_meta(meta)

    def write_meta(self, meta: dict) -> None:
        atomic_write(self.file("run.json"), json.dumps(meta, indent=2) + "\n")

    def record_invocation(self, entry: dict) -> None:
        meta = self.read_meta()
        meta.setdefault("invocations", []).append({"at": _now(), **entry})
        self.write_meta(meta)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
