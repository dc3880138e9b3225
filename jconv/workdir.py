"""Work directories: one run at a time (:func:`lock_workdir`), the config a directory holds
(:func:`check_workdir`, ``config.json``) and its measurements (:class:`Store`,
``measurements.jsonl``), written so that a run killed part-way loses nothing and a rerun resumes.

In a job of several JAX processes (``jconv launch``) process 0 writes the shared files and holds
the lock; the others read.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import ml_collections

from jconv.errors import ConfigError, WorkdirError

__all__ = ["lock_workdir", "check_workdir", "Store", "config_json", "writer"]


def _to_json(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def config_json(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON values (tuples as lists), as ``config.json`` holds it."""
    return _to_json(config)


def writer() -> bool:
    """Whether this process writes shared files: process 0 of a multi-process JAX job, or the
    only process (JAX is asked only when it is already imported)."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def _workdir_error(workdir: Path, error: OSError) -> WorkdirError:
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)) or (workdir.exists()
                                                                   and not workdir.is_dir()):
        reason = "a file is in the way, at it or above it"
    return WorkdirError(f"work directory {str(workdir)!r}: {reason}; expected a directory this "
                        "user can write, or a path where one can be made")


def _holder(owner: Path) -> str:
    """Who holds the lock, from its owner file (the holder writes it just after locking)."""
    for _ in range(20):
        try:
            info = json.loads(owner.read_text())
            return f"pid {info['pid']} on host {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "a run that has not said who it is"


@contextlib.contextmanager
def lock_workdir(workdir: Path | str) -> Iterator[Path]:
    """Holds ``WORKDIR/.lock`` (an OS file lock, ``filelock``) for one run of ``workdir``.

    The holder's pid, host and start time go to ``WORKDIR/.lock.owner``. The kernel releases the
    lock when its process dies, so a killed run never blocks the next one. In a job of several
    processes only the writer (process 0) locks: every process of one job runs in the same
    work directory.

    Raises:
      WorkdirError: another run holds the lock (naming it), or ``workdir`` is not a writable
        directory.
    """
    import filelock

    workdir = Path(workdir)
    if not writer():
        yield workdir
        return
    lock_path, owner = workdir / ".lock", workdir / ".lock.owner"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_path)
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise WorkdirError(f"work directory {str(workdir)!r} is in use by another run "
                           f"({_holder(owner)}); wait for it to end or pass another --workdir") from None
    except OSError as error:
        raise _workdir_error(workdir, error) from None
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            partial = owner.with_name(f".{owner.name}.partial")
            partial.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                           "since": since}) + "\n")
            os.replace(partial, owner)
        except OSError as error:
            raise _workdir_error(workdir, error) from None
        yield workdir
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


class Store:
    """Append-only measurements of a work directory, one JSON line each.

    In a job of several JAX processes (``jconv launch``) every process keeps the records in
    memory and process 0 alone writes them.

    A measurement is identified by its ``key`` (a dict of what was measured: variant,
    width, ...); :meth:`add` appends ``{**key, **values}`` and syncs it to disk before
    returning, and :meth:`has` tells a rerun what to skip. A final line cut short by a kill
    is dropped when the store is opened (it is measured again); any other line that is not a
    record is a :class:`WorkdirError` naming the file and the line, never skipped.
    """

    def __init__(self, workdir: Path | str, filename: str = "measurements.jsonl"):
        self.path = Path(workdir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            *lines, cut = data.split(b"\n")  # cut: what follows the last newline
            for number, line in enumerate(lines, 1):
                if line.strip():
                    record = self._parse(line, number)
                    self._records[self._id(record["key"])] = record
            if cut and writer():  # a line cut short by a kill: measured again
                os.truncate(self.path, len(data) - len(cut))

    def _parse(self, line: bytes, number: int) -> dict:
        try:
            record = json.loads(line)
            self._id(record["key"])
            if not isinstance(record["key"], dict):
                raise TypeError("its key is not an object")
        except (ValueError, KeyError, TypeError) as error:
            reason = "no key" if isinstance(error, KeyError) else str(error)
            raise WorkdirError(f"{self.path}: line {number} is not a measurement record ({reason}); "
                               "expected one JSON object with a key per line: restore the file "
                               "or pass another --workdir") from None
        return record

    @staticmethod
    def _id(key: Mapping) -> str:
        return json.dumps(key, sort_keys=True)

    def has(self, key: Mapping) -> bool:
        """Whether a measurement of ``key`` is recorded."""
        return self._id(key) in self._records

    def add(self, key: Mapping, values: Mapping) -> dict:
        """Records ``{"key": key, **values}``, synced to disk before it returns."""
        record = {"key": dict(key), **values}
        if writer():
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self._records[self._id(key)] = record
        return record

    def records(self) -> list[dict]:
        """Every recorded measurement, the latest of each key."""
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


def _without_legacy_keys(previous: dict, resolved: dict) -> dict:
    """``previous`` without the ``experiment`` keys that configs carried before they named
    their run function by import, where the resolved config has none: such a run resumes."""
    return {k: _without_legacy_keys(v, resolved[k]) if isinstance(v, dict)
            and isinstance(resolved.get(k), dict) else v
            for k, v in previous.items() if k != "experiment" or k in resolved}


def check_workdir(workdir: Path, config: ml_collections.ConfigDict, path: Path) -> None:
    """Writes ``config.json``, refusing a work directory that holds another config's run or a
    corrupt ``config.json``."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _workdir_error(workdir, error) from None
    resolved = config_json(config)
    saved = workdir / "config.json"
    if saved.exists():
        try:
            previous = json.loads(saved.read_bytes())
            if not isinstance(previous, dict):
                raise ValueError(f"a JSON {type(previous).__name__}, not an object")
        except ValueError as error:
            raise WorkdirError(f"{saved}: not a config.json of a run ({error}); expected the "
                               "JSON object jconv wrote: restore it or pass another --workdir") from None
        previous = _without_legacy_keys(previous, resolved)
        if previous != resolved:
            changed = sorted(k for k in set(previous) | set(resolved)
                             if previous.get(k) != resolved.get(k))
            raise ConfigError(f"{path}: work directory {str(workdir)!r} holds a run of a "
                              f"different config (differs in {changed}); pass another "
                              "--workdir or delete it")
    if writer():  # atomically: other processes of the job may be reading it
        partial = saved.with_name(f".{saved.name}.partial")
        partial.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
        os.replace(partial, saved)
