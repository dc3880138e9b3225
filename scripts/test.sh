#!/usr/bin/env bash
# Tests: set up .venv (pinned) and run the whole suite (test paths come from pyproject.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"
