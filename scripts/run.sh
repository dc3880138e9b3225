#!/usr/bin/env bash
# Main job: set up .venv (pinned) and run jconv; with no arguments, the default experiment
# (jconv run configs/quadratic_cost.py). Any arguments go to `python -m jconv` instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
if [ $# -eq 0 ]; then
  set -- run configs/quadratic_cost.py
fi
exec .venv/bin/python -m jconv "$@"
