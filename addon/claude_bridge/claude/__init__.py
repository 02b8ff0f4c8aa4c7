"""Running the Claude Code CLI: invocation, process lifecycle and its stream-json events."""
