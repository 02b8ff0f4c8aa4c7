"""The bridge as mitmproxy runs it: endpoints it answers itself, what it records for mitmweb, the -s script."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mitmproxy import io

from conftest import ROOT, Bridge, bridge_env, first_response, free_port, rss
from fake_anthropic import Reply

JSON_HEADERS = {"Content-Type": "application/json"}


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_health_reports_the_cli_and_runs_in_flight(bridge, claude_version):
    status, _, body = call(bridge.url + "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["claude"]["version"] == claude_version
    assert body["claude"]["path"].endswith("claude")
    assert body["runs_in_flight"] == 0


def test_models_list_and_object(bridge):
    client = bridge.client()
    ids = {model.id for model in client.models.list()}
    assert {"claude-opus-4", "claude-sonnet-4", "claude-haiku-4", "opus", "sonnet", "haiku", "gpt-4"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    assert client.models.retrieve("claude-sonnet-4-5-20250929").owned_by == "anthropic"


def test_unknown_model_object_is_404(bridge):
    status, _, body = call(bridge.url + "/v1/models/llama-3")
    assert status == 404
    assert body["error"]["code"] == "model_not_found"


def test_other_paths_get_openai_404_and_never_leave_the_machine(bridge):
    for path in ("/v1/embeddings", "/v1/images/generations", "/v2/anything"):
        status, _, body = call(bridge.url + path, "POST", b"{}")
        assert status == 404
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "api.openai.com" not in "".join(
        line for line in bridge.log.read_text().splitlines() if "server connect" in line
    ), "connection_strategy=lazy: the bridge never dials the real API"


def test_wrong_method_is_405(bridge):
    status, headers, body = call(bridge.url + "/v1/chat/completions")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"model": "sonnet"}', b'{"model": 1, "messages": []}'])
def test_malformed_requests_are_400(bridge, fake, body):
    status, _, answer = call(bridge.url + "/v1/chat/completions", "POST", body)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


def test_bridged_flows_are_recorded_as_the_client_saw_them(start_bridge, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    bridge = start_bridge(f"save_stream_file={saved}")
    client = bridge.client()
    fake.enqueue(Reply(("streamed", " answer")), Reply(("plain answer",)))
    list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "n"}])
    bridge.stop()
    with saved.open("rb") as f:
        streamed, plain = [flow for flow in io.FlowReader(f).stream() if flow.request.path.startswith("/v1/chat")]
    assert saved.stat().st_mode & 0o777 == 0o600  # prompts and answers: the user's alone
    for flow in (streamed, plain):
        assert flow.request.url == "https://api.openai.com/v1/chat/completions"
        assert flow.request.headers["Authorization"] == "<redacted by claude-bridge>"  # it went nowhere
        assert json.loads(flow.request.content)["model"] == "gpt-4o"
        assert "claude-sonnet-5-5" in flow.comment and "finished (end_turn)" in flow.comment
        assert "tokens in" in flow.comment and " ms" in flow.comment
        assert flow.marked
    assert streamed.response.content.endswith(b"data: [DONE]\n\n")
    assert b'"content":" answer"' in streamed.response.content
    assert json.loads(plain.response.content)["choices"][0]["message"]["content"] == "plain answer"


def test_mitmdump_script_works_the_same(tmp_path, fake, claude_bin):
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "mitmdump"),
        "-s", str(ROOT / "addon" / "bridge.py"),
        "--mode", f"reverse:https://api.openai.com@{port}",
        "--listen-host", "127.0.0.1",
        "--set", f"claude_bin={claude_bin}",
    ]  # fmt: skip
    bridge = Bridge(argv, bridge_env(tmp_path, fake.url), tmp_path / "mitmdump.log", port)
    try:
        fake.enqueue(Reply(("via", " mitmdump")))
        stream = bridge.client().chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}], stream=True
        )
        assert [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content] == [
            "via",
            " mitmdump",
        ]
    finally:
        bridge.stop()


def test_web_flag_serves_mitmweb_beside_the_bridge(start_bridge, fake):
    web_port = free_port()
    bridge = start_bridge("web_open_browser=false", f"web_port={web_port}", "web_password=test-token", web=True)
    assert bridge.client().chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "w"}])
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/?token=test-token", timeout=10) as response:
        assert b"<title>mitmproxy</title>" in response.read()


def test_a_chunked_request_body_is_answered(bridge, fake):
    body = json.dumps({"model": "sonnet", "messages": [{"role": "user", "content": "chunked"}]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=30)
    connection.request("POST", "/v1/chat/completions", iter([body[:10], body[10:]]), JSON_HEADERS, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["choices"][0]["message"]["content"] == "ECHO: chunked"
    assert response.getheader("Connection") != "close", "the backend's own connection handling stays inside"


def test_a_body_with_broken_chunked_framing_gets_no_answer_and_the_log_says_why(bridge, fake):
    """mitmproxy 12 closes the connection on a body it cannot read before any hook could answer with a 400."""
    log_from = bridge.log.stat().st_size
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as sock:
        sock.sendall(head + b"not-a-size\r\n{}\r\n0\r\n\r\n")
        with pytest.raises(http.client.RemoteDisconnected):
            http.client.HTTPResponse(sock).begin()
    expected = (
        "POST /v1/chat/completions -> no response: its body could not be read, and mitmproxy closed without an "
        "answer: HTTP/1 protocol error: illegal chunk header"
    )
    deadline = time.monotonic() + 30
    while expected not in bridge.log.read_bytes()[log_from:].decode(errors="replace"):
        assert time.monotonic() < deadline, bridge.log.read_bytes()[log_from:].decode(errors="replace")
        time.sleep(0.05)
    assert fake.requests == []


def test_absurdly_nested_json_is_400_not_forwarded(bridge, fake):
    nested = b'{"model": "sonnet", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, _, answer = call(bridge.url + "/v1/chat/completions", "POST", nested)
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


def test_lone_surrogates_from_cut_emoji_are_carried(bridge, fake):
    half_emoji = "\ud83d"  # what a JavaScript client sends when it cuts text mid-emoji; JSON allows it
    messages = [
        {"role": "system", "content": f"sys {half_emoji}"},
        {"role": "user", "content": f"before {half_emoji}"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": f"cut {half_emoji} here"},
    ]
    body = json.dumps({"model": "sonnet", "messages": messages}).encode()
    status, _, answer = call(bridge.url + "/v1/chat/completions", "POST", body)
    assert status == 200
    assert answer["choices"][0]["message"]["content"].startswith("ECHO: cut ")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_a_64_mb_body_gets_413_in_openais_shape(bridge, fake, chunked):
    body = b'{"model": "sonnet", "messages": [{"role": "user", "content": "' + b"x" * (64 * 1024 * 1024) + b'"}]}'
    connection = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=60)
    if chunked:
        pieces = iter([body[i : i + 1024 * 1024] for i in range(0, len(body), 1024 * 1024)])
        connection.request("POST", "/v1/chat/completions", pieces, JSON_HEADERS, encode_chunked=True)
    else:
        # The bridge may answer and close before the whole body is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("POST", "/v1/chat/completions", body, JSON_HEADERS)
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
    assert fake.requests == []


ANNOUNCED = 300 * 1024 * 1024


def announcing_head(*headers: str) -> bytes:
    """A chat request head announcing a 300 MiB body (ten times bridge_max_body), sent without the body."""
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    lines += [f"Content-Length: {ANNOUNCED}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_announced_over_the_limit_gets_413_before_it_is_sent_and_is_never_kept(bridge, fake):
    before = rss(bridge.process.pid)
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as sock:
        sock.sendall(announcing_head())
        status, body = first_response(sock)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "request_too_large"
        # A client that sends its body anyway: none of it is kept (the bridge closes the connection after its 413).
        with contextlib.suppress(OSError):
            for _ in range(64):
                sock.sendall(b"x" * 1024 * 1024)
    assert rss(bridge.process.pid) - before < 32 * 1024 * 1024
    assert fake.requests == []


def test_expect_100_continue_with_an_oversized_length_gets_413_not_continue(bridge, fake):
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as sock:
        sock.sendall(announcing_head("Expect: 100-continue"))
        status, body = first_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
