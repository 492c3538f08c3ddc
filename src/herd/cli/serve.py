"""``herd serve``: an OpenAI-compatible HTTP server with continuous batching and a browser chat page.

The model loads like ``herd generate``'s (the same flags); the server is
:mod:`herd.serve.app` on uvicorn. It listens on 127.0.0.1 unless told
otherwise, and a server reachable from other machines should have an API key
(``--api-key`` or the ``HERD_API_KEY`` environment variable, which keeps the
key out of the process list). SIGTERM or Ctrl-C stops taking connections and
lets the running requests finish (at most ``--drain-timeout`` seconds).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
import threading
import time

from herd.argtypes import non_negative_int, port, positive_int
from herd.cli.model_flags import add_model_args, load_engine

DEFAULT_PORT = 8000


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd serve``."""
    p = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API, with a browser chat page",
        description="Serve MODEL at http://HOST:PORT: POST /v1/chat/completions and /v1/completions (streamed "
        "or not; the official openai client works unchanged), GET /v1/models, /health, /metrics "
        "(Prometheus) and a chat page at /. Requests are batched continuously: each joins the running "
        "batch between decode steps and leaves when done.",
        epilog="examples:\n"
        "  herd serve SmolLM2-135M-Instruct.Q4_1.gguf            # then open http://127.0.0.1:8000/\n"
        "  HERD_API_KEY=secret herd serve runs/demo/pretrain/hf --max-batch 8 --port 8080\n"
        "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        '       -d \'{"messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 32}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--api-key",
        default=os.environ.get("HERD_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 routes (default: $HERD_API_KEY, else no key)",
    )
    p.add_argument(
        "--max-batch", type=positive_int, default=16, help="sequences decoded together (default 16)"
    )
    p.add_argument(
        "--max-queue",
        type=non_negative_int,
        default=64,
        help="requests that may wait for a free row; beyond them the server answers 503 (default 64)",
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=4096,
        help="the most tokens one request may ask (default 4096)",
    )
    p.add_argument("--chat-format", help="llama2, llama3 or jinja (default: detected from the tokenizer)")
    p.add_argument("--model-name", help="the id /v1/models reports (default: MODEL's file or folder name)")
    p.add_argument(
        "--drain-timeout",
        type=positive_int,
        default=60,
        help="seconds a stop waits for running requests (default 60)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from herd.serve.app import ServeOptions, create_app
    from herd.serve.scheduler import Scheduler
    from herd.serve.schemas import Limits

    _check_free(args.host, args.port)
    _warn_if_open(args.host, args.api_key)
    engine, tokenizer = load_engine(args)
    scheduler = Scheduler(engine, tokenizer, max_batch=args.max_batch, max_queue=args.max_queue)
    name = args.model_name or os.path.basename(os.path.normpath(args.model))
    options = ServeOptions(name, args.chat_format, args.api_key, Limits(max_tokens=args.max_tokens))
    app = create_app(scheduler, options)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=args.drain_timeout,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_announce, args=(server, args.host, args.port), daemon=True).start()
    # uvicorn drains on SIGTERM, then raises the signal again to the handler it found: a handler that
    # does nothing makes a drained stop exit 0, as a finished server should.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    return 0 if server.started else 1


def _announce(server: object, host: str, port: int) -> None:
    """Say where the server listens once it does."""
    while not getattr(server, "started", False):
        if getattr(server, "should_exit", False):
            return
        time.sleep(0.05)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"herd serve: listening on http://{shown}:{port} (the chat page is at /)", file=sys.stderr, flush=True
    )


def _check_free(host: str, port: int) -> None:
    """Fail before loading the model if the address cannot be listened on (another server has it)."""
    from herd.errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another server? try --port)"
            ) from None


def _warn_if_open(host: str, api_key: str | None) -> None:
    """A server other machines can reach without a key answers anyone: say so."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        print(
            f"herd serve: warning: listening on {host} without an API key: anyone who reaches this "
            "address can use the model (set --api-key or HERD_API_KEY)",
            file=sys.stderr,
        )
