"""One module per experiment, each with ``run(config, workdir)``; run them with ``jconv run``.

Each config file in ``configs/`` names what it runs by importing it
(``from experiments.quadratic_cost import run``); ``pip install -e .`` installs this package.
"""
