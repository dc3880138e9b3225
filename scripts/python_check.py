"""Can this Python install requirements.lock? ``python scripts/python_check.py``.

Every pin of ``requirements.lock`` declares the Pythons it installs on (its wheel's
``Requires-Python``); ``scripts/requires_python.txt`` records them, one pin a line. This
checks the interpreter running it (or ``--as X.Y.Z``) against every one, before any
download: exit 0 when all hold, else one line naming the version needed, the version
found and the package that needs it, and exit 1. ``scripts/_venv.sh`` runs it with each
candidate interpreter and takes the first that passes.

``python scripts/python_check.py --write`` (in the set-up ``.venv``, after changing the
lock) records the pins' ``Requires-Python`` from the installed packages.

Runs on any Python 3 (a too-old one must still get the message): no imports beyond the
standard library, no syntax newer than 3.6.
"""

import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LOCK = os.path.join(HERE, "..", "requirements.lock")
TABLE = os.path.join(HERE, "requires_python.txt")
HEADER = ("# Requires-Python of every pin in requirements.lock, from the installed packages:\n"
          "# python scripts/python_check.py --write (in .venv) after changing the lock.\n")


def parse_version(text):
    """``"3.11.2"`` -> ``(3, 11, 2)``; a missing part is 0."""
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def _holds(version, clause):
    """Whether ``version`` (a 3-tuple) satisfies one clause of a Requires-Python:
    ``>=3.11.5``, ``<3.15``, ``!=3.14.1``, ``!=3.0.*``, ``==3.11.*``, ``~=3.10``."""
    m = re.match(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*([\d.]+)(\.\*)?\s*$", clause)
    if not m:
        return True  # nothing this check understands: leave it to pip
    op, text, wildcard = m.groups()
    want = [int(p) for p in text.strip(".").split(".")]
    if wildcard:  # ==3.0.* / !=3.0.*: compare the leading parts only
        same = list(version[:len(want)]) == want
        return same if op == "==" else (not same if op == "!=" else True)
    want_t = tuple(want + [0] * (3 - len(want)))[:3]
    if op in ("==", "==="):
        return version == want_t
    if op == "!=":
        return version != want_t
    if op == ">=":
        return version >= want_t
    if op == ">":
        return version > want_t
    if op == "<=":
        return version <= want_t
    if op == "<":
        return version < want_t
    prefix = want[:-1] if len(want) > 1 else want  # ~=3.10 -> >=3.10, ==3.*
    return version >= want_t and list(version[:len(prefix)]) == prefix


def satisfies(version, spec):
    return all(_holds(version, clause) for clause in spec.split(",") if clause.strip())


def read_table(path=TABLE):
    """``[(pin, requires_python)]`` from ``requires_python.txt``."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                pin, spec = line.split(None, 1)
                rows.append((pin, spec.strip()))
    return rows


def _lower_bound(spec):
    """The least version a spec's ``>=``/``>``/``~=`` clauses allow, as text."""
    bounds = [parse_version(v) for op, v in re.findall(r"(>=|~=|>)\s*([\d.]+)", spec)]
    return ".".join(map(str, max(bounds))) if bounds else None


def check(version, rows):
    """None if ``version`` satisfies every pin's Requires-Python, else the one line."""
    failing = [(pin, spec) for pin, spec in rows if not satisfies(version, spec)]
    if not failing:
        return None
    found = ".".join(map(str, version))
    pin, spec = max(failing, key=lambda r: parse_version(_lower_bound(r[1]) or "0"))
    lower = _lower_bound(spec)
    need = ("Python >= %s" % lower if lower and parse_version(lower) > version
            else "a Python %s" % spec)
    others = ("; %d more pins rule it out" % (len(failing) - 1)) if len(failing) > 1 else ""
    return ("jconv needs %s (%s in requirements.lock requires %s%s); found Python %s"
            % (need, pin, spec, others, found))


def write(lock=LOCK, table=TABLE):
    """Records every lock pin's Requires-Python from the installed packages."""
    import importlib.metadata as md
    lines = []
    with open(lock) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            pin = line.split(";")[0].strip()
            name = re.split(r"[=<>!~\s]", pin)[0]
            spec = md.metadata(name).get("Requires-Python")
            if spec:
                lines.append("%s %s\n" % (pin, spec))
    with open(table, "w") as f:
        f.write(HEADER + "".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--as", dest="version", metavar="X.Y.Z",
                        help="check this version instead of the running interpreter's")
    parser.add_argument("--write", action="store_true",
                        help="record the pins' Requires-Python from the installed packages")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    version = parse_version(args.version) if args.version else tuple(sys.version_info[:3])
    message = check(version, read_table())
    if message:
        print("error: %s (%s)" % (message, sys.executable if not args.version else "--as"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
