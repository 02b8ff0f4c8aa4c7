"""What the mitmweb comment says about a run: its time to first token split where the CLI was ready."""

from __future__ import annotations

import json
import re

from mitmproxy import io

from claude_bridge.report import RECORD_KEY, Outcome, RunRecord, TurnReport
from conftest import wait_for


def report_at(ready: float | None, first_text: float | None) -> TurnReport:
    """A finished run that started at 0 (times in seconds)."""
    report = TurnReport(claude_model="claude-sonnet-5-5", served="a new CLI", started=0.0)
    report.ready, report.first_text, report.finished = ready, first_text, 0.3
    report.finish("end_turn")
    return report


def test_the_first_token_splits_into_start_up_and_api():
    report = report_at(ready=0.2, first_text=0.25)
    assert report.summary().endswith("; 300 ms, first token 250 ms (start-up 200 + API 50)")
    record = report.record()
    assert (record.first_token_ms, record.start_up_ms, record.duration_ms) == (250, 200, 300)
    assert RunRecord.model_validate(json.loads(record.model_dump_json())) == record


def test_without_a_ready_moment_the_first_token_is_not_split():
    assert report_at(ready=None, first_text=0.25).summary().endswith("; 300 ms, first token 250 ms")
    assert report_at(ready=None, first_text=None).summary().endswith("; 300 ms")
    # A run that failed before any text: a ready CLI, but nothing to split.
    failed = report_at(ready=0.2, first_text=None)
    failed.end(Outcome.FAILED, "529: overloaded")
    assert failed.record().start_up_ms is None
    assert failed.summary().endswith("failed with 529: overloaded by a new CLI; "
                                     "tokens in 0 (cache read 0, written 0) out 0; $0.0000; 300 ms")  # fmt: skip


def test_each_way_of_serving_splits_the_first_token(start_bridge, fake, tmp_path):
    saved = tmp_path / "flows.mitm"
    bridge = start_bridge("claude_pool_size=1", "claude_live_sessions=1", f"save_stream_file={saved}")
    client = bridge.client()
    client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "first"}])  # a new CLI
    wait_for(lambda: bridge.health()["warm_clis"] == 1, "a warm CLI of the request's shape")
    second = [{"role": "user", "content": "second"}]
    answer = client.chat.completions.create(model="sonnet", messages=second)  # the warm CLI
    follow_up = [*second, {"role": "assistant", "content": answer.choices[0].message.content},
                 {"role": "user", "content": "and then?"}]  # fmt: skip
    client.chat.completions.create(model="sonnet", messages=follow_up)  # the live session
    bridge.stop()

    with saved.open("rb") as f:
        flows = [flow for flow in io.FlowReader(f).stream() if flow.request.path == "/v1/chat/completions"]
    split = r"by (a new CLI|a warm CLI|the live session); .*, first token (\d+) ms \(start-up (\d+) \+ API (\d+)\)$"
    found = [re.search(split, flow.comment) for flow in flows]
    assert all(found), [flow.comment for flow in flows]
    assert [match[1] for match in found] == ["a new CLI", "a warm CLI", "the live session"]  # type: ignore[index]
    for flow, match in zip(flows, found, strict=True):
        first_token, start_up, api = (int(match[n]) for n in (2, 3, 4))  # type: ignore[index]
        assert start_up + api == first_token
        record = RunRecord.model_validate(flow.metadata[RECORD_KEY])
        assert (record.first_token_ms, record.start_up_ms) == (first_token, start_up)
