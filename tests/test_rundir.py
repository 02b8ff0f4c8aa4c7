"""The private run directories: where they are made, and what a temp dir that will not hold one raises."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest

from claude_bridge.claude import rundir
from claude_bridge.claude.errors import RunDirUnwritable


def test_a_run_directory_is_private_and_named_after_this_bridge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    directory = rundir.create()
    assert directory.parent == tmp_path
    assert directory.name.startswith(rundir.PREFIX)
    assert directory.stat().st_mode & 0o777 == 0o700


def test_a_temp_dir_that_cannot_hold_a_directory_raises_unwritable_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))
    with pytest.raises(RunDirUnwritable, match="file: Not a directory") as caught:
        rundir.create()
    assert (caught.value.parent, caught.value.errno) == (not_a_directory, errno.ENOTDIR)
