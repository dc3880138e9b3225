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

if [ ! -x "$_jconv_venv/bin/python" ]; then
    _jconv_py=""
    if command -v python3.11 >/dev/null 2>&1; then
        _jconv_py="python3.11"
    elif command -v python3 >/dev/null 2>&1 \
        && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        _jconv_py="python3"
    fi
    if [ -z "$_jconv_py" ]; then
        echo "error: jconv needs Python 3.11+, but neither python3.11 nor a python3 >= 3.11 is on PATH" \
             "(found: $(python3 --version 2>&1 || echo 'no python3'))." >&2
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
    "$_jconv_venv/bin/python" -m pip install -q -c requirements.lock -e '.[test,docs]'
    echo "$_jconv_want" > "$_jconv_stamp"
fi

# The oneDNN extension (impl="onednn"): built when missing or stale, never retried with
# the same inputs after a failure. A failed build prints one line and jconv runs without
# it (jconv.backends() says why). Run as a file: it imports neither jax nor jconv.
"$_jconv_venv/bin/python" jconv/backends/build.py --if-needed || true

unset _jconv_root _jconv_venv _jconv_stamp _jconv_py _jconv_want
unset -f _jconv_sha256
