"""Options from the confdir's config.yaml, the command line winning over it, and every option documented."""

from __future__ import annotations

import re
import subprocess
import sys

from claude_bridge.options import OPTIONS
from conftest import ROOT


def bridge_options() -> list[str]:
    return [option.name for option in OPTIONS]


def test_config_yaml_in_the_confdir_sets_options_and_the_command_line_wins(start_bridge, fake, tmp_path):
    confdir = tmp_path / "certs"
    confdir.mkdir()
    (confdir / "config.yaml").write_text(
        "bridge_model_map:\n  - 'house-model=opus'\nclaude_max_runs: 3\nclaude_max_queued: 7\n"
    )
    bridge = start_bridge("claude_max_runs=5", confdir=confdir)
    assert "house-model" in [model.id for model in bridge.client().models.list()]
    assert "runs: 5 at once, 7 queued" in bridge.log_once(lambda log: " ready, answering with " in log, "the banner")


def test_help_lists_every_bridge_option_with_its_default():
    shown = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in bridge_options():
        assert re.search(rf"^  {name} \(default: [^)]+\)$", shown, re.MULTILINE), name


def test_the_readme_documents_every_bridge_option():
    table = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))
    assert set(bridge_options()) <= documented


def test_the_readmes_examples_name_the_address_the_bridge_listens_on():
    """The bridge listens on 127.0.0.1; where `localhost` resolves to ::1 first, clients given it fail to connect."""
    readme = (ROOT / "README.md").read_text()
    assert "http://127.0.0.1:3456/v1" in readme
    assert not re.search(r"https?://localhost:(3456|8080)\b", readme)
