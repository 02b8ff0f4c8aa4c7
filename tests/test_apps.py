"""Which app a request is counted under: named access keys (and their admission), else the User-Agent's product."""

from __future__ import annotations

import json

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from claude_bridge import access, apps
from claude_bridge.addon import ClaudeBridge

KEYS = {"notes": "k-notes-1", "agent": "k-agent-2"}


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        ("OpenAI/Python 1.54.0", "OpenAI/Python"),
        ("AsyncOpenAI/Python 1.54.0", "AsyncOpenAI/Python"),
        ("OpenAI/JS 4.77.0", "OpenAI/JS"),
        ("curl/8.5.0", "curl"),
        ("ai-sdk/openai/1.2.3 ai-sdk/provider-utils/2.0.0 runtime/node.js/20", "ai-sdk/openai"),
        ("python-httpx/0.27.2", "python-httpx"),
        ("codex_cli_rs/0.20.0 (Ubuntu 24.4.0; x86_64) xterm", "codex_cli_rs"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "Mozilla"),
        ("HomeAssistant/v2025.1", "HomeAssistant"),
        ("my app", "my"),
        ("evil\x1b[31m=app/1.0", "evil31mapp"),
        ("tabbed\tname/1", "tabbed"),
        ("x" * 500, "x" * apps.MAX_LABEL),
        ("/1.0", apps.UNKNOWN),
        ("", apps.UNKNOWN),
        (None, apps.UNKNOWN),
    ],
)
def test_the_user_agents_product_is_a_short_printable_label(user_agent, label):
    assert apps.product(user_agent) == label


def test_a_named_key_names_the_app_whatever_its_user_agent():
    headers = {"authorization": "Bearer k-agent-2", "user-agent": "OpenAI/Python 1.54.0"}
    assert apps.app_of(headers, KEYS) == "agent"
    assert apps.app_of({**headers, "authorization": "Bearer shared"}, KEYS) == "OpenAI/Python"
    assert apps.app_of({"user-agent": "curl/8.5.0"}, {}) == "curl"


def test_a_user_agent_cannot_take_the_name_of_an_app_with_a_key():
    claimed = {"authorization": "Bearer shared", "user-agent": "agent/1.0"}
    assert apps.app_of(claimed, KEYS) == "agent (User-Agent)"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer k-notes", "Bearer k-notes-1x", "Basic k-notes-1", "k-notes-1", "Bearer \udcff"],
)
def test_only_a_whole_named_key_as_bearer_names_an_app(authorization):
    assert access.app_of_key(authorization, KEYS) is None


@pytest.mark.parametrize(
    ("authorization", "access_key", "app_keys", "admitted"),
    [
        (None, "", {}, True),  # no key asked for
        (None, "", KEYS, False),
        ("Bearer k-notes-1", "", KEYS, True),
        ("Bearer k-notes-1", "the-key", KEYS, True),
        ("Bearer the-key", "the-key", KEYS, True),
        ("Bearer the-key", "", KEYS, False),
        ("Bearer wrong", "the-key", KEYS, False),
    ],
)
def test_a_named_key_lets_its_app_in_as_the_access_key_does(authorization, access_key, app_keys, admitted):
    assert access.admitted(authorization, access_key, app_keys) is admitted
    assert access.keys_required(access_key, app_keys) is bool(access_key or app_keys)


def test_app_keys_parse_to_a_read_only_mapping():
    keys = apps.parse_app_keys(["notes=k-notes-1", " agent = k-agent-2 ", "with-equals=a=b"])
    assert dict(keys) == {**KEYS, "with-equals": "a=b"}
    with pytest.raises(TypeError):
        keys["other"] = "k"  # type: ignore[index]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["notes"], r"entry 1 .*must be APP=KEY"),
        (["=k"], r"entry 1 must be APP=KEY"),
        (["notes="], r"entry 1 \(notes\) must be APP=KEY"),
        (["my app=k"], r"letters, digits"),
        (["a/b=k"], r"letters, digits"),
        (["notes=k1", "notes=k2"], r"entry 2 \(notes\): notes has a key already"),
        (["notes=same", "agent=same"], r"entry 2 \(agent\): that key is another app's too"),
    ],
)
def test_bad_app_keys_are_refused_naming_the_entry(entries, message):
    with pytest.raises(ValueError, match=message):
        apps.parse_app_keys(entries)


@pytest.mark.parametrize("entries", [["my app=s3cret"], ["notes=s3cret", "notes=s3cret"], ["a=s3cret", "b=s3cret"]])
def test_a_refused_app_key_entry_never_shows_the_key(entries):
    with pytest.raises(ValueError) as refused:
        apps.parse_app_keys(entries)
    assert "s3cret" not in str(refused.value)


def test_bad_app_keys_are_an_options_error():
    addon = ClaudeBridge()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match="must be APP=KEY"):
        tctx.configure(addon, bridge_app_keys=["no-equals-sign"])


def models_request(authorization: str | None):
    request = tutils.treq(method=b"GET", scheme=b"https", host="api.openai.com", port=443, path=b"/v1/models")
    request.headers["Host"] = "api.openai.com"
    if authorization:
        request.headers["Authorization"] = authorization
    flow = tflow.tflow(req=request)
    flow.client_conn.sni = "api.openai.com"
    return flow


@pytest.fixture
async def bridge(claude_bin):
    addon = ClaudeBridge()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, claude_bin=claude_bin, listen_host="127.0.0.1", bridge_app_keys=["notes=k-notes-1"])
        await addon.running()
        yield addon
        await addon.done()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer k-notes-2", 401), ("Bearer k-notes-1", 200), ("bearer k-notes-1", 200)],
)
async def test_with_app_keys_set_a_request_needs_one_at_its_headers(bridge, authorization, status):
    flow = models_request(authorization)
    bridge.requestheaders(flow)
    assert (flow.response is not None) is (status == 401)  # refused at the headers, before the body hook
    bridge.request(flow)
    assert flow.response.status_code == status
    if status == 401:
        error = json.loads(flow.response.content)["error"]
        assert error["code"] == "invalid_api_key"
        assert "bridge_app_keys" in error["message"]
