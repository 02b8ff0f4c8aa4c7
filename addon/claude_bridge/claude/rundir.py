"""The private directories runs happen in, named after the bridge that made them so a restart can clear stale ones."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RunDirUnwritable

logger = logging.getLogger(__name__)

PREFIX = "claude-bridge-"


def create() -> Path:
    """A fresh 0700 directory in the temp dir, named claude-bridge-<this bridge's pid>-<random>."""
    parent = Path(tempfile.gettempdir())
    with writing(parent):
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def writing(parent: Path) -> Iterator[None]:
    """Raise any OSError inside as `RunDirUnwritable`: a full temp dir is the machine's problem, not the request's."""
    try:
        yield
    except OSError as e:
        raise RunDirUnwritable(parent, e) from e


def remove_stale() -> int:
    """Remove the run directories of bridges that are gone (killed with SIGKILL, or the machine lost power).

    Only this user's directories whose bridge pid is not running are touched; returns how many went.
    """
    removed = 0
    for directory in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = directory.name.removeprefix(PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or directory.is_symlink() or directory.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _running(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed %d run directories left by an earlier bridge", removed)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
