"""Records the real CLI's stdout for each plan-limit state the fake API can report (tests/recordings/rate_limit_*).

Run from a checkout with the pinned CLI installed: `python scripts/record_rate_limits.py`. Each run is the bridge's
own invocation (SAFE_FLAGS, one stream-json user line on stdin) against tests/fake_anthropic.py on 127.0.0.1 with
`fake.plan_limits` set; machine-local paths become `<path>`, as in the other recordings.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "tests")]

from claude_bridge.claude.invocation import SAFE_FLAGS  # noqa: E402
from fake_anthropic import FakeAnthropic, cli_env  # noqa: E402
from fake_plan_limits import UnifiedLimits  # noqa: E402

CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
STATES = {
    "allowed": UnifiedLimits.allowed,
    "allowed_warning": UnifiedLimits.warning,
    "rejected": UnifiedLimits.rejected,
    "overage": UnifiedLimits.overage,
}


def record(fake: FakeAnthropic, name: str, out: Path) -> None:
    fake.plan_limits = STATES[name](time.time())
    with tempfile.TemporaryDirectory() as tmp:
        home, cwd = Path(tmp, "home"), Path(tmp, "cwd")
        home.mkdir()
        cwd.mkdir()
        line = {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "hello"}]}}
        done = subprocess.run(
            [str(CLAUDE), *SAFE_FLAGS, "--model", "claude-sonnet-4-5"],
            input=json.dumps(line) + "\n",
            capture_output=True,
            text=True,
            cwd=cwd,
            env=cli_env(home, fake.url),
            timeout=60,
        )
        text = done.stdout.replace(str(cwd.resolve()), "<path>").replace(tmp, "<path>")
    text = re.sub(r'"messaging_socket_path":"[^"]*"', '"messaging_socket_path":"<path>"', text)
    (out / f"rate_limit_{name}.stdout.jsonl").write_text(text)
    headers = fake.plan_limits.headers(time.time())
    (out / f"rate_limit_{name}.headers.json").write_text(json.dumps(headers, indent=1) + "\n")


def main() -> None:
    out = ROOT / "tests" / "recordings"
    with FakeAnthropic() as fake:
        for name in STATES:
            record(fake, name, out)
            print(f"recorded rate_limit_{name}")


if __name__ == "__main__":
    main()
