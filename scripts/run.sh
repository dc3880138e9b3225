#!/usr/bin/env bash
# Main job: set up .venv (pinned) and run jconv; with no arguments, the default demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
exec .venv/bin/python -m jconv "${@:-demo}"
