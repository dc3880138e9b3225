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
* whatever the experiment writes from them: a summary CSV, PNG plots.

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
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags


class ConfigError(ValueError):
    """A config file, argument or override that cannot be used."""


def _read_config_file(path: Path, arg: str | None):
    """Executes the config file; returns it as a module and its locked config."""
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"jconv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        hint = ("; experiments/ is installed with the repository: pip install -e ."
                if error.name == "experiments" else "")
        raise ConfigError(f"{path}: {error}{hint}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config(arg=None)")
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"{path}: names no experiment: import its run(config, workdir), "
                          "e.g. `from experiments.quadratic_cost import run`")
    try:
        config = module.get_config(arg) if arg is not None else module.get_config()
    except ValueError as error:  # how a config file refuses an argument
        raise ConfigError(f"{path}: {error}") from None
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


def _to_json(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def config_json(config: ml_collections.ConfigDict) -> dict:
    return _to_json(config)


def _writer() -> bool:
    """Whether this process writes shared files: process 0 of a multi-process JAX job, or the
    only process (JAX is asked only when it is already imported)."""
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


class Store:
    """Append-only measurements of a work directory, one JSON line each.

    In a job of several JAX processes (``jconv launch``) every process keeps the records in
    memory and process 0 alone writes them.

    A measurement is identified by its ``key`` (a dict of what was measured: variant,
    width, ...); :meth:`add` appends ``{**key, **values}`` and syncs it to disk before
    returning, and :meth:`has` tells a rerun what to skip. A line cut short by a kill is
    dropped when the store is opened.
    """

    def __init__(self, workdir: Path | str, filename: str = "measurements.jsonl"):
        self.path = Path(workdir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict] = {}
        if self.path.exists():
            lines = self.path.read_text().splitlines(keepends=True)
            good = []
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a partial line from an interrupted write
                if not line.endswith("\n"):
                    continue
                good.append(line)
                self._records[self._id(record["key"])] = record
            if len(good) != len(lines):
                self.path.write_text("".join(good))

    @staticmethod
    def _id(key: Mapping) -> str:
        return json.dumps(key, sort_keys=True)

    def has(self, key: Mapping) -> bool:
        return self._id(key) in self._records

    def add(self, key: Mapping, values: Mapping) -> dict:
        record = {"key": dict(key), **values}
        if _writer():
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self._records[self._id(key)] = record
        return record

    def records(self) -> list[dict]:
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
    """Writes ``config.json``, refusing a work directory that holds another config's run."""
    workdir.mkdir(parents=True, exist_ok=True)
    resolved = config_json(config)
    saved = workdir / "config.json"
    if saved.exists():
        previous = _without_legacy_keys(json.loads(saved.read_text()), resolved)
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


def run(spec: str, overrides: Sequence[str] = (), workdir: str | Path | None = None) -> Path:
    """Runs the experiment of config ``spec`` (``path[:arg]``) into ``workdir``."""
    module, config, path, arg = _load(spec, overrides)
    if workdir is None:
        workdir = Path("runs") / (path.stem + (f"_{arg}" if arg else ""))
    workdir = Path(workdir)
    check_workdir(workdir, config, path)
    module.run(config, workdir)
    return workdir
