"""One module per experiment, each with ``run(config, workdir)``; run them with ``jconv run``.

The config files in ``configs/`` name their experiment module in ``config.experiment``.
"""
