"""The script to give mitmproxy: `mitmdump -s addon/bridge.py --mode reverse:https://api.openai.com@3456`."""

from claude_bridge.addon import ClaudeBridge

addons = [ClaudeBridge()]
