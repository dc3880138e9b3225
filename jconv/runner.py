"""The experiment runner: a config file in, a work directory of measurements out.

``jconv run configs/NAME.py[:ARG] [--config.KEY=VALUE ...] [--workdir DIR]`` loads
``get_config(ARG)`` from the file (a locked ``ml_collections.ConfigDict`` whose
``experiment`` field names a module of ``experiments/``), applies the overrides, and
calls that module's ``run(config, workdir)``. The work directory (default
``runs/NAME`` or ``runs/NAME_ARG``) receives:

* ``config.json``: the resolved config;
* ``measurements.jsonl``: one JSON line per measurement, flushed and synced as it is
  made, so a run killed part-way loses none of them and a rerun skips them
  (:class:`Store`);
* whatever the experiment writes from them: a summary CSV, PNG plots.

Every config takes the ``smoke`` argument (``configs/NAME.py:smoke``), which shrinks the
run to seconds. A wrong key, type or value is a :class:`ConfigError` naming the key, the
value and the file.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config file, argument or override that cannot be used."""


def _read_config_file(path: Path, arg: str | None) -> ml_collections.ConfigDict:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    _add_project_root(path)  # config files may import experiments' shared settings
    spec = importlib.util.spec_from_file_location(f"jconv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config(arg=None)")
    config = module.get_config(arg) if arg is not None else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config returned {type(config).__name__}, "
                          "expected an ml_collections.ConfigDict")
    if "experiment" not in config:
        raise ConfigError(f"{path}: the config has no 'experiment' key naming a module of "
                          "experiments/")
    config.lock()
    return config


def _parse_value(text: str, current: Any, key: str, path: Path) -> Any:
    """Parses an override's text into the type of the field it replaces."""
    if isinstance(current, str):
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{path}: --config.{key}={text!r}: expected a bool (true/false)")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"{path}: --config.{key}={text!r}: expected a value of type "
                          f"{type(current).__name__} (like {current!r})") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, tuple) and not isinstance(value, tuple):
        value = (value,)
    if current is not None and type(value) is not type(current):
        raise ConfigError(f"{path}: --config.{key}={text!r}: expected {type(current).__name__} "
                          f"(like {current!r}), got {type(value).__name__}")
    return value


def apply_override(config: ml_collections.ConfigDict, override: str, path: Path) -> None:
    """Applies one ``--config.KEY=VALUE`` (or ``KEY=VALUE``) override in place."""
    text = override.removeprefix("--").removeprefix("config.")
    if "=" not in text:
        raise ConfigError(f"{path}: override {override!r}: expected --config.KEY=VALUE")
    key, value_text = text.split("=", 1)
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents + [leaf]):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(f"{path}: --config.{key}={value_text!r}: no key "
                              f"{'.'.join((parents + [leaf])[:i + 1])!r}; known keys: {known}")
        if i < len(parents):
            node = node[part]
    value = _parse_value(value_text, node[leaf], key, path)
    try:
        node[leaf] = value
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: --config.{key}={value_text!r}: {error}") from None


def load(spec: str, overrides: Sequence[str] = ()) -> tuple[ml_collections.ConfigDict, Path,
                                                              str | None]:
    """Loads ``path[:arg]`` and applies ``overrides``; returns (config, path, arg)."""
    path_text, _, arg = spec.partition(":")
    path = Path(path_text)
    config = _read_config_file(path, arg or None)
    for override in overrides:
        apply_override(config, override, path)
    return config, path, arg or None


def _to_json(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value


def config_json(config: ml_collections.ConfigDict) -> dict:
    return _to_json(config)


class Store:
    """Append-only measurements of a work directory, one JSON line each.

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


def check_workdir(workdir: Path, config: ml_collections.ConfigDict, path: Path) -> None:
    """Writes ``config.json``, refusing a work directory that holds another config's run."""
    workdir.mkdir(parents=True, exist_ok=True)
    resolved = config_json(config)
    saved = workdir / "config.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        if previous != resolved:
            changed = sorted(k for k in set(previous) | set(resolved)
                             if previous.get(k) != resolved.get(k))
            raise ConfigError(f"{path}: work directory {str(workdir)!r} holds a run of a "
                              f"different config (differs in {changed}); pass another "
                              "--workdir or delete it")
    saved.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def progress(total: int, done: int, desc: str) -> Iterator[Any]:
    """A tqdm progress bar (rate and ETA) over ``total`` measurements, ``done`` already made."""
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=done, desc=desc, unit="meas", dynamic_ncols=True,
              file=sys.stderr) as bar:
        yield bar


def _add_project_root(config_path: Path) -> Path:
    root = config_path.resolve().parent.parent  # configs/ sits beside experiments/
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def _experiment_module(name: str, config_path: Path):
    root = _add_project_root(config_path)
    try:
        return importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as error:
        raise ConfigError(f"{config_path}: experiment={name!r}: no module "
                          f"experiments/{name}.py under {root} ({error})") from None


def run(spec: str, overrides: Sequence[str] = (), workdir: str | Path | None = None) -> Path:
    """Runs the experiment of config ``spec`` (``path[:arg]``) into ``workdir``."""
    config, path, arg = load(spec, overrides)
    module = _experiment_module(config.experiment, path)
    if workdir is None:
        workdir = Path("runs") / (path.stem + (f"_{arg}" if arg else ""))
    workdir = Path(workdir)
    check_workdir(workdir, config, path)
    module.run(config, workdir)
    return workdir
