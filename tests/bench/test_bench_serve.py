"""bench/serve.py's pure parts: percentiles, a configuration's summary, the SSE parser and token accounting.

No server is started: the parser gets a canned byte stream cut at every place (inside a CRLF,
inside a multi-byte character, inside ``data:``), the statistics hand-computed values, and the
request loop canned responses through httpx's mock transport (a whole stream, one that stalls
until the time bound cuts it, a 503, one that ends without ``[DONE]``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("herd_bench_serve", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


serve = _load_bench()

# a keep-alive comment, CRLF and CR line ends, a two-line event, a multi-byte character, an event
# without data, [DONE]
STREAM = (
    b": ping - 2026-12-03\r\n\r\n"
    b'data: {"choices": [{"text": " caf\xc3\xa9"}]}\r\n\r\n'
    b"event: message\nid: 7\n\n"
    b"data:first line\r"
    b"data: second line\r\r"
    b"data: [DONE]\n\n"
)
EVENTS = ['{"choices": [{"text": " café"}]}', "first line\nsecond line", "[DONE]"]


def feed_pieces(pieces: list[bytes]) -> list[str]:
    parser = serve.SSEParser()
    return [event for piece in pieces for event in parser.feed(piece)]


def test_sse_parser_reads_the_stream_whole_and_byte_by_byte() -> None:
    assert feed_pieces([STREAM]) == EVENTS
    assert feed_pieces([STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_sse_parser_gives_the_same_events_wherever_the_stream_is_cut(cut: int) -> None:
    assert feed_pieces([STREAM[:cut], STREAM[cut:]]) == EVENTS


def test_sse_parser_holds_an_unfinished_event_back() -> None:
    parser = serve.SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the CR and LF are one line end, not a line and a blank line
    assert parser.feed(b"\r\n") == ["a"]


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert serve.percentile(values, 0) == 1.0
    assert serve.percentile(values, 50) == 2.5
    assert serve.percentile(values, 99) == pytest.approx(3.97)  # rank 2.97: 3 + 0.97 * (4 - 3)
    assert serve.percentile(values, 100) == 4.0
    assert serve.percentile([5.0], 99) == 5.0
    assert math.isnan(serve.percentile([], 50))


def test_summarize_counts_tokens_errors_and_cut_requests() -> None:
    Result = serve.RequestResult
    results = [
        Result(prompt=0, ttft_s=0.1, gaps_s=[0.01, 0.03], chunks=3, finish_reason="length", done=True),
        Result(prompt=1, ttft_s=0.3, gaps_s=[0.02], chunks=2, usage_tokens=5, prompt_tokens=60, done=True),
        Result(prompt=2, error="HTTP 503: full", done=True),
        Result(prompt=3, ttft_s=0.2, chunks=1, finish_reason="stop"),  # cut by the time bound
    ]
    summary = serve.summarize(results, wall_s=2.0)
    assert summary["requests"] == 4
    assert (summary["completed"], summary["errors"], summary["cut"]) == (2, 1, 1)
    assert summary["error_samples"] == ["HTTP 503: full"]
    assert summary["stopped_early"] == 1
    assert summary["tokens"] == 3 + 5 + 0 + 1  # usage's count replaces the chunks where it came
    assert summary["tokens_per_s"] == pytest.approx(4.5)
    assert summary["ttft_p50_s"] == pytest.approx(0.2)
    assert summary["ttft_p99_s"] == pytest.approx(0.298)  # 0.2 + 0.98 * (0.3 - 0.2)
    assert summary["itl_p50_s"] == pytest.approx(0.02)
    assert summary["itl_p99_s"] == pytest.approx(0.0298)
    assert summary["mean_prompt_tokens"] == 60


def chunk(text: str, finish_reason: str | None = None) -> str:
    return json.dumps({"choices": [{"text": text, "index": 0, "finish_reason": finish_reason}]})


def test_take_chunk_counts_tokens_latencies_and_not_the_closing_chunk() -> None:
    result = serve.RequestResult(prompt=0)
    last: list[float] = []
    arrivals = [(chunk(""), 10.5), (chunk(" the"), 10.75), (chunk(" end"), 11.0), (chunk("", "length"), 11.5)]
    for data, now in arrivals:
        serve.take_chunk(result, data, 10.0, now, last)
    assert result.chunks == 3  # an empty token (a partial character) counts, the closing chunk does not
    assert result.ttft_s == pytest.approx(0.75)  # the first chunk with text
    assert result.gaps_s == pytest.approx([0.25, 0.25])
    assert result.finish_reason == "length"
    serve.take_chunk(result, json.dumps({"choices": [], "usage": {"completion_tokens": 4}}), 10.0, 11.6, last)
    assert result.tokens == 4
    serve.take_chunk(result, json.dumps({"error": {"message": "boom"}}), 10.0, 11.7, last)
    assert result.error is not None and "boom" in result.error


def completion_stream(*, hang: bool) -> httpx.MockTransport:
    """A canned /v1/completions stream cut into awkward pieces; with ``hang`` it stalls after two tokens."""
    tokens = f"data: {chunk(' a')}\n\ndata: {chunk(' b')}\n\n".encode()
    rest = f"data: {chunk('', 'length')}\n\ndata: [DONE]\n\n".encode()

    async def pieces() -> AsyncIterator[bytes]:
        for part in (tokens, rest):
            for start in range(0, len(part), 7):
                yield part[start : start + 7]
            if hang:
                await asyncio.Event().wait()

    return httpx.MockTransport(lambda request: httpx.Response(200, content=pieces()))


def request_through(transport: httpx.MockTransport, cancel_after: float | None = None) -> Any:
    result = serve.RequestResult(prompt=0)

    async def go() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            task = asyncio.create_task(serve.run_request(client, "/v1/completions", {}, result))
            await asyncio.wait([task], timeout=cancel_after)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    return result


def test_run_request_measures_a_whole_stream() -> None:
    result = request_through(completion_stream(hang=False))
    assert (result.done, result.error, result.tokens, result.finish_reason) == (True, None, 2, "length")
    assert result.ttft_s is not None and len(result.gaps_s) == 1


def test_a_request_cut_by_the_time_bound_keeps_its_tokens_and_is_not_done() -> None:
    result = request_through(completion_stream(hang=True), cancel_after=0.5)
    assert (result.done, result.error, result.tokens) == (False, None, 2)


def test_run_request_reports_an_error_status_and_a_stream_without_done() -> None:
    refused = httpx.MockTransport(lambda request: httpx.Response(503, json={"error": {"message": "full"}}))
    result = request_through(refused)
    assert result.done and result.error is not None and result.error.startswith("HTTP 503")
    short = httpx.MockTransport(
        lambda request: httpx.Response(200, content=f"data: {chunk(' a')}\n\n".encode())
    )
    result = request_through(short)
    assert result.done and result.error == "the stream ended without [DONE]" and result.tokens == 1
