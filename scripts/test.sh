#!/usr/bin/env bash
# Tests: set up .venv (pinned) and run the suite (test paths come from pyproject.toml).
#   bash scripts/test.sh            the full suite, as CI runs it (about 12 min on 2 cores)
#   bash scripts/test.sh --quick    the quick tier (about 3 min): no test marked slow, and
#                                   hypothesis profile "quick" (4 examples per sweep)
# Any other argument goes to pytest: bash scripts/test.sh --quick tests/test_cost.py -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tier=() args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then tier=(-m "not slow" --hypothesis-profile=quick)
  else args+=("$arg"); fi
done
source scripts/_venv.sh
exec .venv/bin/python -m pytest -n 2 -q ${tier[@]+"${tier[@]}"} ${args[@]+"${args[@]}"}
