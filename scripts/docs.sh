#!/usr/bin/env bash
# Documentation site: set up .venv (pinned), make the evidence report the site shows, and
# build the site into site/ with warnings as errors (mkdocs build --strict). The site needs
# no network: open site/index.html in a browser.
#
# The report page comes from JCONV_DOCS_REPORT, a report work directory (what
# `jconv run configs/report.py --workdir DIR` wrote); unset, the smoke report is made once
# into .docs-report/ (about a minute and a half on 2 CPU cores) and reused.
# Any arguments go to `mkdocs build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
export NO_MKDOCS_2_WARNING=1
if [ -z "${JCONV_DOCS_REPORT:-}" ]; then
  export JCONV_DOCS_REPORT=.docs-report
  if [ ! -f "$JCONV_DOCS_REPORT/report/index.md" ]; then
    echo "Making the smoke report for the site (jconv run configs/report.py:smoke) ..." >&2
    .venv/bin/python -m jconv run configs/report.py:smoke --workdir "$JCONV_DOCS_REPORT"
  fi
fi
.venv/bin/python -m mkdocs build --strict "$@"
echo "site: $(pwd)/site/index.html"
