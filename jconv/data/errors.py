"""The one error a data set on disk raises: it names the path and what was expected."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data folder or file that cannot be used: missing, of the wrong layout, unreadable,
    truncated, or (a pickle) asking to import something its format never holds."""

    def __init__(self, path, problem: str, expected: str):
        self.path, self.problem, self.expected = Path(path), problem, expected
        super().__init__(f"{path}: {problem}; expected {expected}")
