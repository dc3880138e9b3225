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

The work directory's files are :mod:`jconv.workdir`'s; the errors, :mod:`jconv.errors`'.

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
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from jconv.errors import ConfigError, WorkdirError
from jconv.workdir import Store, check_workdir, config_json, lock_workdir

__all__ = ["ConfigError", "WorkdirError", "Store", "check_workdir", "config_json", "load", "lock_workdir",
           "progress", "run", "setting_error", "validate", "workdir_of"]


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
    jconv.errors.ConfigError: toy.py: --config.rate='fast': expected float (like 2.0): ...
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
