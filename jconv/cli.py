"""Command line: ``python -m jconv <command>`` (or the ``jconv`` console script).

* ``jconv run configs/NAME.py[:smoke] [--config.KEY=VALUE ...] [--workdir DIR]``: runs an
  experiment (:mod:`jconv.runner`);
* ``jconv summary MODEL [--config.KEY=VALUE ...] [--json]``: per-layer table of a model
  (:mod:`jconv.summary`);
* ``jconv demo``: every conv variant on the camera image (:mod:`jconv.demo`);
* ``jconv info [--json]``: versions, devices, backends and why, CPU features and the OpenMP
  policy, for an issue report (:mod:`jconv.info`);
* ``jconv launch --processes P [--devices-per-process D] -- COMMAND ...``: the jconv
  ``COMMAND`` in ``P`` processes on this machine that form one JAX job
  (:mod:`jconv.launch`); every command joins such a job when its environment says so. A
  ``run`` is validated once, before any process starts.

``--config.KEY=VALUE`` overrides are parsed by ``ml_collections.config_flags``
(:func:`jconv.runner.apply_override`).

Every mistake of the user (an unknown option, a bad value, a missing or unusable file, a work
directory in use or not writable, a corrupt file in it) ends in one line ``jconv COMMAND: error:
...`` naming the culprit and what was expected, and exit status 2. ``jconv --debug COMMAND`` (or
``JCONV_DEBUG=1``) prints the traceback too. Any other exception is a bug of jconv: its
traceback is printed, then a line saying so, and the exit status is 1.

Each command parses its options and hands them to one function.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from jconv.platform import keep_freed_memory


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text}")
        return value
    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jconv", description="How exactly do convolution layers work?")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too (or set JCONV_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="every conv variant on the camera image: shapes, params, FLOPs, time",
        description="Layer 1 turns the grey camera image into k1 maps; layer 2 runs every "
                    "variant with k2 filters and prints one table row per variant.")
    demo.add_argument("--k1", type=_int_at_least(1), default=4, help="maps after layer 1 (default 4)")
    demo.add_argument("--k2", type=_int_at_least(1), default=8,
                      help="filters of layer 2 (default 8)")
    demo.add_argument("--size", type=_int_at_least(5), default=128,
                      help="the image is resized to size x size, at least 5 for the VALID "
                           "5x5 local conv (default 128)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the random filters (default 0)")
    run = commands.add_parser(
        "run", help="run an experiment from a config file",
        description="Runs configs/NAME.py[:ARG] into a work directory; a rerun skips the "
                    "measurements already made. Overrides: --config.KEY=VALUE.")
    run.add_argument("config", help="configs/NAME.py, optionally with :ARG (e.g. :smoke)")
    run.add_argument("--workdir", default=None, help="default runs/NAME[_ARG]")
    summary = commands.add_parser(
        "summary", help="per-layer table of a model: kernels, groups, shapes, params, MACs",
        description="Builds MODEL (abstractly) and prints one row per layer from the cost "
                    "model. Settings: --config.variant, --config.width, --config.input_size, "
                    "--config.in_channels, --config.num_classes, --config.aux_classifiers.")
    summary.add_argument("model", help="alexnet, alexnet_single_tower, googlenet, mobilenet_v1")
    summary.add_argument("--json", action="store_true", help="print JSON with a total object")
    info = commands.add_parser(
        "info", help="versions, devices, backends, CPU features, OpenMP: for an issue report",
        description="Prints the versions of jconv and its libraries (oneDNN included), the "
                    "devices, each backend and why it can (not) run, the CPU features oneDNN "
                    "uses (AVX2, AVX-512, AVX512-BF16, AMX) and the OpenMP policy.")
    info.add_argument("--json", action="store_true", help="print JSON")
    launch = commands.add_parser(
        "launch", help="run a jconv command in several JAX processes on this machine",
        description="Starts `jconv COMMAND ...` (given after --) in P processes joined by "
                    "jax.distributed with a local coordinator; e.g. "
                    "jconv launch --processes 2 --devices-per-process 2 -- run CONFIG")
    launch.add_argument("--processes", type=_int_at_least(1), default=2,
                        help="processes to start (default 2)")
    launch.add_argument("--devices-per-process", type=_int_at_least(1), default=None,
                        help="CPU devices each process gets (default: XLA's own)")
    return parser


def _check_overrides(parser, extra: list[str]) -> None:
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides are --config.KEY=VALUE)")


def _summary(model: str, overrides: list[str], as_json: bool) -> str:
    """``jconv summary``'s text; a setting that the model refuses is a ConfigError naming it."""
    from jconv import runner, summary

    try:
        return summary.main(model, overrides, as_json)
    except runner.ConfigError:
        raise
    except (TypeError, ValueError) as error:  # models.build refusing a setting
        settings = summary.config(model)
        for override in overrides:
            runner.apply_override(settings, override, f"jconv summary {model}")
        if settings.aux_classifiers and model != "googlenet":
            raise runner.ConfigError(f"--config.aux_classifiers=True: {model} has no auxiliary "
                                     "classifiers; expected False (only googlenet has them)") from error
        keys = {k: k for k in settings if k != "model"} | {"does not fit": "input_size"}
        raise runner.setting_error(error, settings, keys) from error


def _launch(parser, args, command: list[str], debug: bool) -> int:
    """Checks the command (and a run's config) here, then starts the processes."""
    if command[:1] == ["jconv"]:
        command = command[1:]
    if command[:1] == ["launch"]:
        parser.error("launch: expected a jconv command other than launch after --")
    inner, extra = parser.parse_known_args(command)  # a bad command exits here, in one line
    if inner.command == "run":
        _check_overrides(parser, extra)
        from jconv import runner

        _, _, path, arg = runner.validate(inner.config, extra)  # before any process starts
        with runner.lock_workdir(runner.workdir_of(path, arg, inner.workdir)):
            pass  # in use by another run: said here, once (process 0 takes the lock itself)
    from jconv import launch

    return launch.launch(["--debug", *command] if debug else command, args.processes,
                         args.devices_per_process)


def _command(parser, args, extra: list[str], command: list[str], debug: bool) -> int:
    if args.command == "launch":
        if extra or not command:
            parser.error("launch: expected options, then -- and a jconv command, e.g. "
                         "jconv launch --processes 2 -- run configs/NAME.py")
        return _launch(parser, args, command, debug)
    if command:
        parser.error(f"unrecognized arguments: -- {' '.join(command)}")
    if args.command in ("run", "summary"):
        _check_overrides(parser, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from jconv import launch

    launch.initialize_from_env()
    if args.command == "summary":
        print(_summary(args.model, extra, args.json))
    elif args.command == "info":
        from jconv import info

        print(info.main(args.json))
    elif args.command == "run":
        from jconv import runner

        print(f"work directory: {runner.run(args.config, extra, args.workdir)}")
    elif args.command == "demo":
        from jconv import demo  # imports JAX: only once the arguments are known to be good
        demo.run(k1=args.k1, k2=args.k2, size=args.size, seed=args.seed)
    return 0


def _user_error(error: BaseException) -> str | None:
    """The one line of an error the user can fix, or None for a bug of jconv."""
    kinds = [OSError]
    for module, name in (("jconv.runner", "ConfigError"), ("jconv.data.errors", "DataError"),
                         ("jconv.train", "NonFiniteLossError")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    if not isinstance(error, tuple(kinds)):
        return None
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split())


def main(argv=None) -> int:
    """Runs the command in ``argv`` (default ``sys.argv[1:]``); returns the exit code: 0, 2 for
    a mistake of the user (one line on stderr), 1 for a bug of jconv (its traceback)."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    debug = "--debug" in argv or os.environ.get("JCONV_DEBUG", "") not in ("", "0")
    keep_freed_memory()  # large buffers reused, not faulted in again at every step
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    try:
        return _command(parser, args, extra, command, debug)
    except Exception as error:  # noqa: BLE001 (every error ends in a line saying what it is)
        line = _user_error(error)
        if line is None or debug:
            traceback.print_exc()
        if line is None:
            print(f"jconv {args.command}: internal error: {type(error).__name__}: "
                  f"{' '.join(str(error).split())}; this "
                  "is a bug of jconv: please report it with the traceback above", file=sys.stderr)
            return 1
        print(f"jconv {args.command}: error: {line.removeprefix(f'jconv {args.command}: ')}",
              file=sys.stderr)
        return 2
