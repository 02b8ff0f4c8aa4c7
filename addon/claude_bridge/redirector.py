"""Local capture on Linux: mitmproxy's redirector, checked before it starts, watched while it runs, stopped first.

mitmproxy runs its eBPF redirector as a child, through `sudo --non-interactive` even as root, and attaches it to the
cgroup2 hierarchy mounted at /sys/fs/cgroup (everything in that cgroup and below is captured). Three things it
does not say clearly, which the bridge does: without sudo it fails at start with "Failed to run sudo"; where
/sys/fs/cgroup is not cgroup2 (cgroup v1 and hybrid hosts) the program fails to attach, the redirector exits, and
mitmproxy keeps running while capturing nothing; and a redirector that mitmproxy leaves behind when it stops keeps
its program attached for a while, so the bridge stops it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from mitmproxy.proxy import mode_specs

REDIRECTOR = "mitmproxy-linux-redirector"
# mitmproxy_rs logs through Python's logging under its Rust module path.
REDIRECTOR_LOGGER = "mitmproxy.packet_sources.linux"
CGROUP_ROOT = "/sys/fs/cgroup"
STOP_GRACE = 5.0


def captures_locally(specs: list[str]) -> bool:
    return sys.platform == "linux" and any(
        isinstance(mode_specs.ProxyMode.parse(spec), mode_specs.LocalMode) for spec in specs
    )


def problems(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """What stops local capture on this Linux machine, found before mitmproxy tries."""
    found = []
    if shutil.which("sudo") is None:
        found.append(
            "local capture: mitmproxy starts its redirector through sudo, even as root, and there is no sudo on "
            "PATH; install it (apt-get install sudo) or use --mode transparent"
        )
    fstype = mount_type(CGROUP_ROOT, mountinfo)
    if fstype != "cgroup2":
        found.append(
            f"local capture attaches an eBPF program to the cgroup2 hierarchy at {CGROUP_ROOT}, and this machine "
            f"has {fstype or 'nothing'} mounted there (cgroup v1 or hybrid); boot with "
            "systemd.unified_cgroup_hierarchy=1, or use --mode transparent"
        )
    return found


def mount_type(path: str, mountinfo: Path) -> str | None:
    """The file system type mounted at `path` (the last mount there wins), from /proc/self/mountinfo."""
    fstype = None
    for line in mountinfo.read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        if fields.split()[4:5] == [path]:
            fstype = rest.split()[0]
    return fstype


class Watch(logging.Handler):
    """Follows the redirector through mitmproxy_rs's log: its exit while the bridge runs is a failure (`on_failure`
    gets what to tell the user, its last words included); at shutdown the bridge stops it and waits for mitmproxy_rs
    to have seen it go, since a report arriving while Python shuts down crashes the process."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self.on_failure = on_failure
        self.exited = asyncio.Event()
        self.stopping = False
        self._loop = asyncio.get_running_loop()
        logging.getLogger(REDIRECTOR_LOGGER).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Called on mitmproxy_rs's own threads."""
        message = record.getMessage()
        if message.startswith("[linux-redirector] exited"):
            self._loop.call_soon_threadsafe(self._exited, message)

    def _exited(self, message: str) -> None:
        self.exited.set()
        # A clean exit is a Ctrl-C that reached the redirector with the bridge: the bridge is stopping too.
        if not self.stopping and "exited successfully" not in message:
            self.on_failure(
                f"local capture failed: mitmproxy's redirector exited ({message}), so no app's traffic reaches the "
                "bridge; the lines above say why (on hosts without a cgroup2 /sys/fs/cgroup its eBPF program cannot "
                "attach). Stopping."
            )

    async def stop(self) -> None:
        """Stop this process's redirector through its sudo (which passes SIGTERM on), and wait until it is gone."""
        self.stopping = True
        started = [pid for pid in _children() if REDIRECTOR.encode() in _cmdline(pid)]
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if started and not self.exited.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), STOP_GRACE)
        logging.getLogger(REDIRECTOR_LOGGER).removeHandler(self)


def _children() -> list[int]:
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == me:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
