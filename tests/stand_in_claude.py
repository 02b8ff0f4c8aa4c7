"""A stand-in for the Claude CLI that breaks in ways the real one cannot be made to: a fault injector for tests.

Run as the bridge's `--claude-bin` (tests copy it to a file named `claude` with this interpreter in a `#!` line,
so the process is known by that name). It answers `--version` as the real CLI does, since the bridge asks at start;
otherwise it reads the stream-json user line the bridge writes and does what the prompt's text names:

    garbage    long non-JSON lines on stdout, then exit 1
    truncated  a valid `system/init` line, then half of a JSON line, then exit 1
    early_exit a valid `system/init` line, a complaint on stderr, then exit 3 without a `result` line
    overlong   a valid `system/init` line, then 80 MiB on stdout without a newline
    orphan_then_hang    a valid `system/init` line, a child left holding stdout and stderr, then silence
    orphan_then_exit    the same, then exit 3 without a `result` line, naming the child's pid on stderr
    orphan_then_answer  a valid answer naming the child's pid, then exit 0 with the child still there

With STAND_IN_CLAUDE_MODE set it is instead the real CLI (STAND_IN_REAL_CLAUDE) with one capability broken, as a
CLI update might break it, for the compatibility probe's tests:

    no-resume       refuses `--resume` as an unknown option
    no-mcp          drops `--mcp-config` and `--allowedTools`: the bridge's tool server never connects
    no-live         exits when a second user turn comes on stdin
    garbage-events  prints every stream_event line as something that is not JSON
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

VERSION = "2.1.331 (Claude Code stand-in)"
GARBAGE = "Segmentation fault in the stand-in: " + "#" * 10_000
COMPLAINT = "stand-in: the configuration is broken"
OVERLONG = 80 * 2**20
INIT = {"type": "system", "subtype": "init", "model": "claude-stand-in", "session_id": "stand-in", "mcp_servers": []}


def main() -> int:
    if "--version" in sys.argv:
        print(VERSION)
        return 0
    if "STAND_IN_CLAUDE_MODE" in os.environ:
        return broken_cli(os.environ["STAND_IN_CLAUDE_MODE"], os.environ["STAND_IN_REAL_CLAUDE"])
    message = json.loads(sys.stdin.readline())["message"]
    mode = "".join(block.get("text", "") for block in message["content"])
    match mode:
        case "garbage":
            print(GARBAGE, flush=True)
            print("and more of it", flush=True)
            return 1
        case "truncated":
            print(json.dumps(INIT), flush=True)
            print('{"type": "stream_event", "event": {"type": "content_block_del', end="", flush=True)
            return 1
        case "early_exit":
            print(json.dumps(INIT), flush=True)
            print(COMPLAINT, file=sys.stderr, flush=True)
            return 3
        case "overlong":
            print(json.dumps(INIT), flush=True)
            sys.stdout.buffer.write(b"x" * OVERLONG)
            sys.stdout.flush()
            return 1
        case "orphan_then_hang":
            print(json.dumps(INIT), flush=True)
            leave_a_child()
            time.sleep(600)
        case "orphan_then_exit":
            print(json.dumps(INIT), flush=True)
            print(f"stand-in: left pid {leave_a_child()} holding stdout", file=sys.stderr, flush=True)
            return 3
        case "orphan_then_answer":
            print(json.dumps(INIT), flush=True)
            text = f"stand-in: left pid {leave_a_child()} holding stdout"
            message = {"id": "msg_stand_in", "model": INIT["model"], "content": [{"type": "text", "text": text}]}
            print(json.dumps({"type": "assistant", "message": message}), flush=True)
            print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": text}), flush=True)
            return 0
    print(f"stand-in: unknown mode {mode!r}", file=sys.stderr)
    return 2


def broken_cli(mode: str, real: str) -> int:
    argv = [real, *sys.argv[1:]]
    match mode:
        case "no-resume" if "--resume" in argv:
            print("error: unknown option '--resume'", file=sys.stderr)
            return 1
        case "no-resume":
            os.execv(real, argv)
        case "no-mcp":
            for flag in ("--mcp-config", "--allowedTools"):
                if flag in argv:
                    del argv[argv.index(flag) : argv.index(flag) + 2]
            os.execv(real, argv)
        case "no-live" | "garbage-events":
            return relay(mode, argv)
    print(f"stand-in: unknown mode {mode!r}", file=sys.stderr)
    return 2


def relay(mode: str, argv: list[str]) -> int:
    """Run the real CLI in this process group (the bridge's stop reaches it), passing its input and output on
    with the mode's fault; its stderr is ours."""
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGINT))
    threading.Thread(target=relay_input, args=(mode, child), daemon=True).start()
    assert child.stdout is not None
    for line in child.stdout:
        if mode == "garbage-events" and line.startswith(b'{"type":"stream_event"'):
            line = b"<stand-in garbage> " + line[40:80] + b"\n"
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    return child.wait()


def relay_input(mode: str, child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    users = 0
    for line in sys.stdin.buffer:
        users += json.loads(line).get("type") == "user"
        if mode == "no-live" and users > 1:
            print("stand-in: a second user turn on stdin, which this CLI does not take", file=sys.stderr, flush=True)
            child.kill()
            return
        child.stdin.write(line)
        child.stdin.flush()
    child.stdin.close()


def leave_a_child() -> int:
    """A child that outlives the stand-in with its stdout and stderr open, as a tool the CLI started might."""
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    return pid


if __name__ == "__main__":
    sys.exit(main())
