"""``python -m jconv``: see :mod:`jconv.cli`."""

import sys

from jconv.cli import main

if __name__ == "__main__":
    sys.exit(main())
