"""Command line: ``python -m jconv <command>`` (or the ``jconv`` console script).

* ``jconv run configs/NAME.py[:smoke] [--config.KEY=VALUE ...] [--workdir DIR]``: runs an
  experiment (:mod:`jconv.runner`);
* ``jconv summary MODEL [--config.KEY=VALUE ...] [--json]``: per-layer table of a model
  (:mod:`jconv.summary`);
* ``jconv demo``: every conv variant on the camera image (:mod:`jconv.demo`);
* ``jconv launch --processes P [--devices-per-process D] -- COMMAND ...``: the jconv
  ``COMMAND`` in ``P`` processes on this machine that form one JAX job
  (:mod:`jconv.launch`); every command joins such a job when its environment says so.

``--config.KEY=VALUE`` overrides are parsed by ``ml_collections.config_flags``
(:func:`jconv.runner.apply_override`); an unusable one exits with status 2 and a message.

Each command parses its options and hands them to one function.
"""

from __future__ import annotations

import argparse
import sys


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text}")
        return value
    parse.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jconv", description="How exactly do convolution layers work?")
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


def main(argv=None) -> int:
    """Runs the command in ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args, extra = parser.parse_known_args(argv)
    if args.command == "launch":
        if extra or not command:
            parser.error("launch: expected options, then -- and a jconv command, e.g. "
                         "jconv launch --processes 2 -- run configs/NAME.py")
        from jconv import launch

        return launch.launch(command, args.processes, args.devices_per_process)
    if command:
        parser.error(f"unrecognized arguments: -- {' '.join(command)}")
    from jconv import launch

    launch.initialize_from_env()
    if args.command in ("run", "summary"):
        bad = [a for a in extra if not a.startswith("--config.")]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides are "
                         "--config.KEY=VALUE)")
        from jconv import runner
        from jconv.data.errors import DataError

        try:
            if args.command == "summary":
                from jconv import summary

                print(summary.main(args.model, extra, args.json))
                return 0
            workdir = runner.run(args.config, extra, args.workdir)
        except (runner.ConfigError, DataError) as error:
            print(f"jconv {args.command}: error: {error}", file=sys.stderr)
            return 2
        print(f"work directory: {workdir}")
        return 0
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "demo":
        from jconv import demo  # imports JAX: only once the arguments are known to be good
        demo.run(k1=args.k1, k2=args.k2, size=args.size, seed=args.seed)
    return 0
