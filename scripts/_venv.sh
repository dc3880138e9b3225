# shellcheck shell=bash
# Sourced by scripts/run.sh and scripts/test.sh: make sure .venv exists in the
# repo root and holds the pinned dependencies (requirements.lock) plus jconv
# installed editable with the [test] and [docs] extras. Reinstalls only when
# requirements.lock or pyproject.toml changed since the last successful install.

_jconv_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$_jconv_root"

_jconv_venv="$_jconv_root/.venv"
_jconv_stamp="$_jconv_venv/.jconv-stamp"

_jconv_sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        cat "$@" | sha256sum | cut -d' ' -f1
    else
        cat "$@" | shasum -a 256 | cut -d' ' -f1
    fi
}

# The interpreter: the first of JCONV_PYTHON (if set), else python3.11, python3.12,
# python3.13, python3.14, python3 on PATH, that satisfies every pin's Requires-Python
# (scripts/python_check.py, before any download); else one line naming the version needed,
# the one found and the package that needs it.
_jconv_why=""
if [ -x "$_jconv_venv/bin/python" ]; then
    if ! _jconv_why="$("$_jconv_venv/bin/python" scripts/python_check.py 2>&1)"; then
        echo "${_jconv_why%%$'\n'*}; .venv was made with it: rm -r .venv, then run again" \
             "with a newer Python first on PATH (or JCONV_PYTHON=/path/to/python)." >&2
        return 1 2>/dev/null || exit 1
    fi
else
    _jconv_py=""
    if [ -n "${JCONV_PYTHON:-}" ]; then
        _jconv_cands=("$JCONV_PYTHON")
    else
        _jconv_cands=(python3.11 python3.12 python3.13 python3.14 python3)
    fi
    for _jconv_cand in "${_jconv_cands[@]}"; do
        command -v "$_jconv_cand" >/dev/null 2>&1 || continue
        # a pyenv shim of a version not selected exits 127 and says so on stderr: skip it
        if _jconv_out="$("$_jconv_cand" scripts/python_check.py 2>/dev/null)"; then
            _jconv_py="$_jconv_cand"
            break
        fi
        [ -z "$_jconv_why" ] && [ -n "$_jconv_out" ] && _jconv_why="${_jconv_out%%$'\n'*}"
    done
    if [ -z "$_jconv_py" ]; then
        if [ -z "$_jconv_why" ]; then
            _jconv_why="error: jconv needs Python >= 3.11.5, and none of ${_jconv_cands[*]} runs here"
        fi
        echo "$_jconv_why; install a newer Python (e.g. pyenv install 3.11) and put it first" \
             "on PATH, or set JCONV_PYTHON=/path/to/python." >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "Creating .venv with $_jconv_py ($("$_jconv_py" --version 2>&1))" >&2
    "$_jconv_py" -m venv "$_jconv_venv"
    rm -f "$_jconv_stamp"
fi

_jconv_want="$(_jconv_sha256 requirements.lock pyproject.toml)"
if [ ! -f "$_jconv_stamp" ] || [ "$(cat "$_jconv_stamp")" != "$_jconv_want" ]; then
    echo "Installing pinned dependencies into .venv (requirements.lock) ..." >&2
    rm -f "$_jconv_stamp"
    if ! "$_jconv_venv/bin/python" -m pip install -q -c requirements.lock -e '.[test,docs]'; then
        echo "error: pip could not install requirements.lock into .venv (its message is above)." >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "$_jconv_want" > "$_jconv_stamp"
fi

# The oneDNN extension (impl="onednn"): built when missing or stale, never retried with
# the same inputs after a failure. A failed build prints one line and jconv runs without
# it (jconv.backends() says why). Run as a file: it imports neither jax nor jconv.
"$_jconv_venv/bin/python" jconv/onednn/build.py --if-needed || true

unset _jconv_root _jconv_venv _jconv_stamp _jconv_py _jconv_want _jconv_why _jconv_cand _jconv_cands _jconv_out
unset -f _jconv_sha256
