"""The experiment runner: a config file in, a work directory of measurements out.

``jconv run configs/NAME.py[:ARG] [--config.KEY=VALUE ...] [--workdir DIR]`` loads
``get_config(ARG)`` from the file (a locked ``ml_collections.ConfigDict``), applies the
overrides, and calls the file's ``run(config, workdir)``: the config file names what it
runs by importing it (``from experiments.quadratic_cost import run``), so this library
never imports ``experiments`` itself. The work directory (default ``runs/NAME`` or
``runs/NAME_ARG``) receives:

* ``config.json``: the resolved config;
* ``measurements.jsonl``: one JSON line per measurement, flushed and synced as it is
  made, so a run killed part-way loses none of them and a rerun skips them
  (:class:`Store`);
* whatever the experiment writes from them: a summary CSV, PNG plots;
* ``.lock`` and, while a run holds it, ``.lock.owner`` (:func:`lock_workdir`).

Before anything is written the whole config is validated: by the overrides' types and by the
config file's optional ``check(config)`` (an experiment's, re-exported as ``run`` is), which raises
:class:`ConfigError` naming the key. Then the work directory is locked for the run
(:func:`lock_workdir`: one run per work directory; in a job of several processes, process 0
holds it), and only then is ``config.json`` written. A corrupt ``config.json`` or a corrupt
line of ``measurements.jsonl`` is a :class:`WorkdirError` naming the file (and the line).

Every config takes the ``smoke`` argument (``configs/NAME.py:smoke``), which shrinks the
run to seconds. Overrides are parsed by ``ml_collections.config_flags`` into the type of
the field they replace (a tuple is given whole: ``--config.widths='(8, 16)'``); a wrong
key, type or value is a :class:`ConfigError` naming the key, the value and the file.

The file itself is read here, not by ``config_flags.DEFINE_config_file``, which loads it
with the deprecated ``load_module`` into one shared ``sys.modules`` entry and defers a
missing file's error to the config's first use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags


class ConfigError(ValueError):
    """A config file, argument or override that cannot be used."""


class WorkdirError(ConfigError):
    """A work directory that cannot be used: in use by another run, not a writable directory,
    or holding a corrupt file."""


def setting_error(error: Exception, config, keys: Mapping[str, str],
                  prefix: str = "--config.") -> ConfigError:
    """``error`` (a ``ValueError`` or ``TypeError`` raised by a setting) as a :class:`ConfigError`
    naming the config key and value that the message's first word of ``keys`` (word -> key)
    points at:

    >>> config = ml_collections.ConfigDict({"steps": -5, "widths": (0.5,)})
    >>> setting_error(ValueError("steps must be ≥ 1, got -5"), config, {"steps": "steps"})
    ConfigError('--config.steps=-5: steps must be ≥ 1, got -5')
    """
    text = " ".join(str(error).split())
    found = sorted((m.start(), key) for word, key in keys.items()
                   if (m := re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)))
    if not found:
        return ConfigError(text)
    key = found[0][1]
    value = config
    for part in key.split("."):
        value = value[part]
    return ConfigError(f"{prefix}{key}={value!r}: {text}")


_OWN_CODE = tuple(os.path.realpath(p) + os.sep for p in (Path(__file__).parent,
                                                         Path(__file__).parent.parent / "experiments"))


def _through_own_code(error: BaseException) -> bool:
    """Whether ``error`` came through the code of jconv or its experiments (past the frame
    that caught it): then it is a bug of theirs, not of the config file that called them."""
    tb = error.__traceback__.tb_next
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename).startswith(_OWN_CODE):
            return True
        tb = tb.tb_next
    return False


def _execute(path: Path, module) -> None:
    """Runs the config file's code into ``module``; a file that is no Python config is a
    ConfigError naming it."""
    spec = importlib.util.spec_from_file_location(module.__name__, path)
    try:
        source = path.read_bytes()
        code = compile(source, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:  # ValueError: null bytes; UnicodeDecodeError
        where = f" (line {error.lineno})" if getattr(error, "lineno", None) else ""
        reason = getattr(error, "msg", None) or str(error)
        raise ConfigError(f"{path}: not a Python config file: {reason}{where}; expected "
                          "Python defining get_config(arg=None) and run") from None
    module.__file__, module.__spec__, module.__loader__ = str(path), spec, spec.loader
    try:
        exec(code, module.__dict__)
    except ModuleNotFoundError as error:
        hint = ("; experiments/ is installed with the repository: pip install -e ."
                if error.name == "experiments" else "")
        raise ConfigError(f"{path}: {error}{hint}") from None
    except Exception as error:
        if _through_own_code(error):
            raise  # a bug of jconv or of the experiment the file imports
        raise ConfigError(f"{path}: running the config file raised {type(error).__name__}: "
                          f"{error} (jconv --debug shows where)") from error


def _read_config_file(path: Path, arg: str | None):
    """Executes the config file; returns it as a module and its locked config."""
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; expected a Python file "
                          "such as configs/NAME.py")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise ConfigError(f"config file {str(path)!r}: expected a Python file ending in .py, "
                          "such as configs/NAME.py")
    module = type(sys)(f"jconv_config_{path.stem}")
    _execute(path, module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config(arg=None)")
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"{path}: names no experiment: import its run(config, workdir), "
                          "e.g. `from experiments.quadratic_cost import run`")
    try:
        config = module.get_config(arg) if arg is not None else module.get_config()
    except ValueError as error:  # how a config file refuses an argument
        raise ConfigError(f"{path}: {error}") from None
    except TypeError as error:
        if error.__traceback__.tb_next is not None:
            raise  # raised inside get_config, not by calling it
        raise ConfigError(f"{path}: get_config({'' if arg is None else repr(arg)}): {error}; "
                          "expected get_config(arg=None)") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config returned {type(config).__name__}, "
                          "expected an ml_collections.ConfigDict")
    config.lock()
    return module, config


def apply_override(config: ml_collections.ConfigDict, override: str, path: Path | str) -> None:
    """Applies one ``--config.KEY=VALUE`` (or ``KEY=VALUE``) override in place.

    ``ml_collections.config_flags`` parses the value into the field's type:

    >>> config = ml_collections.ConfigDict({"widths": (4, 8), "rate": 0.5, "flag": False})
    >>> for override in ("--config.widths=(8, 16)", "--config.rate=2", "--config.flag=true"):
    ...     apply_override(config, override, "toy.py")
    >>> config.widths, config.rate, config.flag
    ((8, 16), 2.0, True)
    >>> apply_override(config, "--config.rate=fast", "toy.py")
    Traceback (most recent call last):
    ...
    jconv.runner.ConfigError: toy.py: --config.rate='fast': expected float (like 2.0): ...
    """
    key, sep, value = override.removeprefix("--").removeprefix("config.").partition("=")
    if not sep or not key:
        raise ConfigError(f"{path}: override {override!r}: expected --config.KEY=VALUE")
    where = f"{path}: --config.{key}={value!r}"
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(f"{where}: no key {'.'.join(parts[:i + 1])!r}; known keys: {known}")
        node = node[part]
    argv = ["jconv", f"--config.{key}={value}"]
    try:
        # A FlagValues of its own: the override flags config_flags defines die with it.
        flag_values = flags.FlagValues()
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values,
                                        lock_config=False, sys_argv=argv)
        flag_values(argv)
    except (flags.Error, TypeError, ValueError) as error:
        reason = str(error).removeprefix(f"flag {argv[1]}: ")
        raise ConfigError(f"{where}: expected {type(node).__name__} (like {node!r}): "
                          f"{reason}") from None


def _load(spec: str, overrides: Sequence[str]):
    path_text, _, arg = spec.partition(":")
    path, arg = Path(path_text), arg or None
    module, config = _read_config_file(path, arg)
    for override in overrides:
        apply_override(config, override, path)
    return module, config, path, arg


def load(spec: str, overrides: Sequence[str] = ()) -> tuple[ml_collections.ConfigDict, Path,
                                                              str | None]:
    """Loads ``path[:arg]`` and applies ``overrides``; returns (config, path, arg)."""
    _, config, path, arg = _load(spec, overrides)
    return config, path, arg


def validate(spec: str, overrides: Sequence[str] = ()):
    """Loads ``path[:arg]`` with ``overrides`` and runs the config file's ``check(config)`` if it
    has one; writes nothing. Returns (module, config, path, arg).

    Raises:
      ConfigError: naming the file and the key (a ``ValueError`` or ``TypeError`` that ``check``
        raises is turned into one).
    """
    module, config, path, arg = _load(spec, overrides)
    check = getattr(module, "check", None)
    if callable(check):
        try:
            check(config)
        except (TypeError, ValueError) as error:
            data_errors = sys.modules.get("jconv.data.errors")
            if data_errors and isinstance(error, data_errors.DataError):
                raise  # names its path already
            text = " ".join(str(error).split())
            raise ConfigError(text if text.startswith(f"{path}:") else f"{path}: {text}") from error
    return module, config, path, arg


def _to_json(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def config_json(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON values (tuples as lists), as ``config.json`` holds it."""
    return _to_json(config)


def _writer() -> bool:
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
    if not _writer():
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
            if cut and _writer():  # a line cut short by a kill: measured again
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
        if _writer():
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
    if _writer():  # atomically: other processes of the job may be reading it
        partial = saved.with_name(f".{saved.name}.partial")
        partial.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
        os.replace(partial, saved)


@contextlib.contextmanager
def progress(total: int, done: int, desc: str) -> Iterator[Any]:
    """A tqdm progress bar (rate and ETA) over ``total`` measurements, ``done`` already made."""
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=done, desc=desc, unit="meas", dynamic_ncols=True,
              file=sys.stderr) as bar:
        yield bar


def workdir_of(path: Path, arg: str | None, workdir: str | Path | None = None) -> Path:
    """``workdir``, or the default of config ``path[:arg]``: ``runs/NAME`` or ``runs/NAME_ARG``."""
    return Path(workdir) if workdir is not None else Path("runs") / (path.stem + (f"_{arg}" if arg else ""))


def run(spec: str, overrides: Sequence[str] = (), workdir: str | Path | None = None) -> Path:
    """Runs the experiment of config ``spec`` (``path[:arg]``) into ``workdir``: validates the
    config (:func:`validate`), locks the work directory (:func:`lock_workdir`), writes
    ``config.json`` and calls the config file's ``run(config, workdir)``."""
    module, config, path, arg = validate(spec, overrides)
    workdir = workdir_of(path, arg, workdir)
    with lock_workdir(workdir):
        check_workdir(workdir, config, path)
        module.run(config, workdir)
    return workdir
