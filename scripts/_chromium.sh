# Sourced by scripts/test: a headless Chromium and a matching ChromeDriver for the browser tests.
# The system's pair (`chromium` and `chromedriver` on PATH, e.g. Debian's chromium + chromium-driver) or
# CHROMIUM_BIN + CHROMEDRIVER_BIN win; otherwise a pair from the package registries goes into .cache/chromium/ once,
# which needs no root: Chromium's headless shell ships inside the npm package below and ChromeDriver inside the
# PyPI wheel below (Google's own download site is not needed). Both must name the same Chromium branch.
CHROMIUM_PACKAGE="@sparticuz/chromium@153.0.0"        # Chromium 153.0.8010.0, headless shell, Linux x86-64
CHROMEDRIVER_PACKAGE="chromedriver-py==153.0.8010.52" # ChromeDriver of the same branch (8010)
CHROMIUM_CACHE="$ROOT/.cache/chromium/153.0.8010"

# ensure_chromium: export CHROMIUM_BIN and CHROMEDRIVER_BIN when the registry's pair is the one to use; says on
# stderr what to install when none can be had (the browser tests then fail saying the same).
ensure_chromium() {
    if [ -n "${CHROMIUM_BIN:-}" ] && [ -n "${CHROMEDRIVER_BIN:-}" ]; then return; fi
    if _runnable chromium && _runnable chromedriver; then return; fi
    if [ ! -x "$CHROMIUM_CACHE/chromium" ] && ! _fetch_chromium "$CHROMIUM_CACHE"; then
        echo "claude-bridge: the browser tests need Chromium and its ChromeDriver: install them (Debian/Ubuntu:" \
            "apt-get install chromium chromium-driver) or set CHROMIUM_BIN and CHROMEDRIVER_BIN" >&2
        return
    fi
    _check_libraries "$CHROMIUM_CACHE/headless_shell" "$CHROMIUM_CACHE/chromedriver"
    export CHROMIUM_BIN="$CHROMIUM_CACHE/chromium" CHROMEDRIVER_BIN="$CHROMIUM_CACHE/chromedriver"
}

# `command -v` alone also names a file on PATH that cannot be run.
_runnable() { [ -x "$(command -v "$1")" ]; }

_fetch_chromium() {
    local into=$1 work
    if [ "$(uname -sm)" != "Linux x86_64" ]; then
        echo "claude-bridge: no chromium + chromedriver on PATH; the registry's copy is for Linux x86-64 only" >&2
        return 1
    fi
    echo "claude-bridge: no chromium + chromedriver on PATH: fetching $CHROMIUM_PACKAGE (npm) and" \
        "$CHROMEDRIVER_PACKAGE (PyPI) into $into" >&2
    mkdir -p "$(dirname "$into")"
    work=$(mktemp -d "$into.partial.XXXXXX")
    # Each step's commands are chained (bash ignores -e in a subshell whose status `if` tests): a failed step
    # leaves no half-made copy behind, which would be taken for a whole one ever after.
    if ! (cd "$work" && _unpack_chromium && _unpack_chromedriver && _write_launcher); then
        rm -rf "$work"
        return 1
    fi
    mv "$work" "$into"
}

# The npm package holds the browser brotli-compressed (node's zlib inflates it), beside SwiftShader, the software
# GL that its GPU process loads from the binary's folder.
_unpack_chromium() {
    npm pack --silent --loglevel=error "$CHROMIUM_PACKAGE" >/dev/null &&
        tar xzf ./*.tgz package/bin/chromium.br package/bin/swiftshader.tar.br &&
        _inflate package/bin/chromium.br headless_shell &&
        chmod 755 headless_shell &&
        _inflate package/bin/swiftshader.tar.br swiftshader.tar &&
        tar xf swiftshader.tar &&
        rm -rf package ./*.tgz swiftshader.tar
}

_inflate() {  # _inflate BROTLI_FILE OUTPUT
    node -e 'const { createReadStream, createWriteStream } = require("fs");
        require("stream").pipeline(createReadStream(process.argv[1]), require("zlib").createBrotliDecompress(),
            createWriteStream(process.argv[2]), (error) => { if (error) { console.error(error.message); process.exit(1); } });' \
        "$1" "$2"
}

# The wheel carries a ChromeDriver for every platform: only Linux's is kept.
_unpack_chromedriver() {
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps -d . "$CHROMEDRIVER_PACKAGE" &&
        "$VENV/bin/python" -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("chromedriver_py/chromedriver_linux64") as driver:
    with open("chromedriver", "wb") as out:
        shutil.copyfileobj(driver, out)' ./*.whl &&
        chmod 755 chromedriver &&
        rm ./*.whl
}

# ChromeDriver starts the browser without a URL, and this headless shell then opens no page, so ChromeDriver finds
# none ("unable to discover open pages"): the launcher gives it about:blank.
_write_launcher() {
    cat >chromium <<'EOF'
#!/bin/sh
exec "$(dirname "$0")/headless_shell" "$@" about:blank
EOF
    [ -s chromium ] && chmod 755 chromium
}

# Both binaries use the system's NSS, GLib, XCB and D-Bus libraries; a machine without them needs them installed.
_check_libraries() {
    local missing
    missing=$(ldd "$@" 2>/dev/null | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
    if [ -n "$missing" ]; then
        echo "claude-bridge: Chromium for the browser tests lacks these libraries: $missing(Debian/Ubuntu:" \
            "apt-get install libnss3 libnspr4 libexpat1 libglib2.0-0 libxcb1 libdbus-1-3)" >&2
    fi
}
