"""Starting a CLI: its private directory, its argv and environment, and the process waiting for its first input."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import mcp, rundir, transcript
from .errors import ClaudeNotFound
from .invocation import (
    MAX_TURNS,
    MAX_TURNS_STRUCTURED,
    SAFE_FLAGS,
    ApiProxy,
    ClaudeInvocation,
    ClaudeSettings,
    child_env,
    proxy_env,
)
from .process import ClaudeProcess


@dataclass
class StartedClaude:
    """A spawned CLI, the private directory it runs in, and its tag (sent with its API calls when inspected)."""

    process: ClaudeProcess
    directory: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(4))

    async def discard(self, grace: float) -> None:
        """Stop and reap the process, then remove its directory; safe against a second cancellation."""
        try:
            await self.process.stop(grace)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


async def start(invocation: ClaudeInvocation, settings: ClaudeSettings) -> StartedClaude:
    """Spawn the CLI for `invocation` (everything but its input, which a `ClaudeRun` writes)."""
    directory = rundir.create()
    tag = secrets.token_hex(4)
    try:
        with rundir.writing(directory.parent):
            argv, env, cwd = _prepare(invocation, settings, directory, tag)
        try:
            process = await ClaudeProcess.spawn(argv, env, cwd)
        except (FileNotFoundError, PermissionError) as e:
            raise ClaudeNotFound(settings.claude_bin) from e
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return StartedClaude(process, directory, tag)


def _prepare(
    invocation: ClaudeInvocation, settings: ClaudeSettings, run_dir: Path, tag: str
) -> tuple[list[str], dict[str, str], Path]:
    """Files go beside the working directory, which stays empty: nothing there for the model to find."""
    inv = invocation
    cwd = run_dir / "work"
    cwd.mkdir()
    # Always a system prompt of our own (empty when the client sent none): Claude Code's default prompt
    # describes a coding agent with tools, which is not what an OpenAI client asked for.
    prompt_file = run_dir / "system-prompt.txt"
    # Lone surrogates (text a JavaScript client cut mid-emoji) cannot be UTF-8: they become U+FFFD.
    prompt_file.write_text(inv.system_prompt or "", encoding="utf-8", errors="replace")
    argv = [settings.claude_bin, *SAFE_FLAGS, "--model", inv.model, "--system-prompt-file", str(prompt_file)]
    argv += ["--max-turns", str(MAX_TURNS_STRUCTURED if inv.json_schema is not None else MAX_TURNS)]
    if inv.tools:
        # Only the in-process server's tools are allowed, so their calls reach the bridge (held there until the
        # client's results come); `--tools ""` keeps every built-in tool out whatever is allowed.
        argv += ["--mcp-config", mcp.CONFIG, "--allowedTools", mcp.ALLOWED]
    if inv.effort:
        argv += ["--effort", inv.effort]
    if inv.history:
        transcript_file = run_dir / "transcript.jsonl"
        transcript.write(inv.history, transcript_file)
        argv += ["--resume", str(transcript_file)]
    env = child_env(settings, inv)
    if settings.api_proxy is not None:
        env = proxy_env(settings.api_proxy, tag, env, _trust(settings.api_proxy, env, run_dir / "ca.pem"))
    # The CLI logs each MCP tool call under its cache directory, one folder per working directory: in the run's
    # own directory they go with it, instead of piling up in the user's ~/.cache.
    env["XDG_CACHE_HOME"] = str(run_dir / "cache")
    return argv, env, cwd


def _trust(proxy: ApiProxy, env: dict[str, str], bundle: Path) -> Path:
    """The bridge's CA with whatever the environment's NODE_EXTRA_CA_CERTS already trusted (a company's CA, needed
    for the hosts the bridge's proxy tunnels untouched): the CLI reads one file."""
    pems = [Path(proxy.ca_file).read_bytes()]
    with contextlib.suppress(OSError):  # a file the CLI could not read either
        pems.append(Path(env["NODE_EXTRA_CA_CERTS"]).read_bytes() if env.get("NODE_EXTRA_CA_CERTS") else b"")
    bundle.write_bytes(b"\n".join(pem.strip() for pem in pems if pem.strip()) + b"\n")
    return bundle
