"""claude-bridge: OpenAI API calls answered by the Claude Code CLI, as a mitmproxy addon."""
