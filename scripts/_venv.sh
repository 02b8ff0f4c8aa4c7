# Sourced by scripts/bridge and scripts/test: makes .venv with a Python >= 3.12 and the project installed.
# PYTHON=/path/to/python3.12 picks the interpreter; otherwise the newest suitable one on PATH or under pyenv.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

_suitable() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
    local candidate version
    for candidate in ${PYTHON:-} python3.14 python3.13 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _suitable "$candidate"; then
            command -v "$candidate"
            return
        fi
    done
    # pyenv installs versions without activating them (its shims refuse until one is selected), and a fresh
    # install may not be on PATH yet: look in its root directly.
    local root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in $(ls -d "$root"/versions/*/bin/python3 2>/dev/null | sort -rV); do
        if [ -x "$candidate" ] && _suitable "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    echo "claude-bridge needs Python 3.12 or newer (mitmproxy 12 does); none found." >&2
    echo "Install one (python.org, your package manager, or 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
    return 1
}

# ensure_venv [EXTRAS]: create .venv once, and install the project (with extras such as "test") when
# pyproject.toml changed since the last install; the install is editable, so code changes need none.
ensure_venv() {
    local spec="$ROOT" stamp="$VENV/.installed${1:+-$1}" wanted
    [ -n "${1:-}" ] && spec="$ROOT[$1]"
    if ! { [ -x "$VENV/bin/python" ] && _suitable "$VENV/bin/python"; }; then
        local python
        python=$(find_python) || exit 1
        echo "claude-bridge: creating $VENV with $python (the first run takes a minute or two)" >&2
        "$python" -m venv --clear "$VENV"
        rm -f "$VENV"/.installed*
    fi
    wanted=$("$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$ROOT/pyproject.toml")
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "claude-bridge: installing the project into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --editable "$spec"
        echo "$wanted" >"$stamp"
    fi
}
