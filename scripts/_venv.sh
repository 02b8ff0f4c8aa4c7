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
    # pyenv installs versions without activating them; its shims refuse until one is selected.
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | sort -rV); do
            candidate="$(pyenv root)/versions/$version/bin/python3"
            if [ -x "$candidate" ] && _suitable "$candidate"; then
                echo "$candidate"
                return
            fi
        done
    fi
    echo "claude-bridge needs Python 3.12 or newer (mitmproxy 12 does); none found." >&2
    echo "Install one (python.org, your package manager, or 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
    return 1
}

# ensure_venv [EXTRAS]: create .venv once, then (re)install the project, with extras such as "test".
ensure_venv() {
    local spec="$ROOT"
    [ -n "${1:-}" ] && spec="$ROOT[$1]"
    if ! { [ -x "$VENV/bin/python" ] && _suitable "$VENV/bin/python"; }; then
        local python
        python=$(find_python) || exit 1
        "$python" -m venv --clear "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --editable "$spec"
}
