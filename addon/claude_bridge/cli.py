"""`claude-bridge`: mitmproxy with the bridge loaded, in reverse mode on 127.0.0.1:3456 unless told otherwise.

The subcommands: `ca` (where the CA is, how to trust it), `proxy-env` (proxy variables for a shell), `doctor`,
`usage` (spend per app), `service`; anything else is the bridge's own flags (launch.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import interception, launch


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    match argv[:1]:
        case ["ca"]:
            where = argparse.ArgumentParser(
                prog="claude-bridge ca", description="Where the CA is, and how to trust it."
            )
            where.add_argument(
                "--confdir", type=Path, default=launch.DEFAULT_CONFDIR, help="as the bridge's (default: %(default)s)"
            )
            print(interception.ca_help(where.parse_args(argv[1:]).confdir.expanduser().absolute()))
        case ["proxy-env"]:
            where = argparse.ArgumentParser(prog="claude-bridge proxy-env", description="Proxy variables for a shell.")
            where.add_argument("--host", default="127.0.0.1", help="the bridge's address (default: %(default)s)")
            where.add_argument("--port", type=int, default=8080, help="its regular-mode port (default: %(default)s)")
            proxy = where.parse_args(argv[1:])
            print(interception.proxy_env(f"http://{proxy.host}:{proxy.port}"))
        case ["doctor"]:
            from . import doctor

            sys.exit(doctor.main(argv[1:]))
        case ["usage"]:
            from . import usage

            sys.exit(usage.main(argv[1:]))
        case ["service"]:
            from . import service

            sys.exit(service.main(argv[1:]))
        case _:
            launch.run(argv)
