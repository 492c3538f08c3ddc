"""The OpenAI-compatible HTTP API over a :class:`herd.serve.scheduler.Scheduler` (FastAPI).

Routes: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (streamed as
server-sent events ending with ``data: [DONE]``, or whole), ``GET /v1/models``,
``GET /health``, ``GET /metrics`` (Prometheus text) and the chat page at ``/``.

What a client sends is checked before any work starts (:mod:`herd.serve.schemas`
and the :class:`Limits`): a wrong request gets a 4xx answer in OpenAI's error
shape ``{"error": {"message", "type", "param", "code"}}``, a full server 503 with
``Retry-After``, and a failure inside the server a 500 that says only that; the
traceback goes to the server's log, never to the client. With an API key every
``/v1`` route wants ``Authorization: Bearer KEY``, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herd.errors import HerdError
from herd.infer.completion import encode_prompts
from herd.infer.sampling import SamplingParams
from herd.serve.metrics import ServerMetrics
from herd.serve.scheduler import (
    ErrorEvent,
    Event,
    FinishEvent,
    Handle,
    QueueFull,
    Scheduler,
    ShuttingDown,
    TokenEvent,
)
from herd.serve.scheduler import (
    Request as GenerationRequest,
)
from herd.serve.schemas import ChatCompletionRequest, CompletionRequest, Limits, Usage
from herd.tokenizer.chat import ChatError, ChatFormat, chat_format

STATIC = Path(__file__).with_name("static")
# The page loads nothing from elsewhere and runs no inline script: model output cannot bring code in.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# Seconds between checks that a client waiting for a whole (non-streamed) answer is still there.
DISCONNECT_POLL = 0.5
log = logging.getLogger("herd.serve")


class APIError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON answer."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class _Choice:
    """What a whole (non-streamed) answer collects for one choice."""

    text: list[str] = field(default_factory=list)
    tokens: list[TokenEvent] = field(default_factory=list)
    finish_reason: str = "length"


@dataclass(frozen=True)
class ServeOptions:
    """What :func:`create_app` serves and how."""

    model_name: str
    chat_format: str | None = None
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)


def create_app(scheduler: Scheduler, options: ServeOptions) -> FastAPI:
    """The FastAPI application answering for ``scheduler``'s model; closing it drains the scheduler."""
    tokenizer = scheduler.tokenizer
    limits = options.limits
    metrics = ServerMetrics(scheduler)
    try:
        formatter: ChatFormat | None = chat_format(tokenizer, options.chat_format)
        no_chat = ""
    except ChatError as exc:
        formatter, no_chat = None, str(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(scheduler.close)

    app = FastAPI(title="herd", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.middleware("http")
    async def count_and_protect(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        denied = _denied(request, options.api_key)
        response = denied.response() if denied is not None else await call_next(request)
        metrics.requests.labels(
            request.url.path if request.url.path in ROUTES else "other", response.status_code
        ).inc()
        response.headers.update(PAGE_HEADERS)
        return response

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        where = f"{request.method} {request.url.path}"
        message = {404: f"no such route: {where}", 405: f"method not allowed: {where}"}.get(
            exc.status_code, str(exc.detail)
        )
        return APIError(exc.status_code, message, type=kind, headers=exc.headers).response()

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return APIError(
            500, "the server failed on this request; its log has the details", type="server_error"
        ).response()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": scheduler.running, "waiting": scheduler.waiting}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": options.model_name, "object": "model", "created": 0, "owned_by": "herd"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        if formatter is None:
            raise APIError(400, f"this model has no chat format: {no_chat}", param="messages")
        _check_common(body, limits)
        if len(body.messages) > limits.max_messages:
            raise APIError(
                400, f"at most {limits.max_messages} messages, got {len(body.messages)}", param="messages"
            )
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            prompt = formatter.render_prompt(messages)
        except ChatError as exc:
            raise APIError(400, str(exc), param="messages") from None
        top = body.top_logprobs or 0 if body.logprobs else 0
        job = _generation(prompt, body, top, limits, scheduler.engine.context, "messages")
        handles = _submit(scheduler, [job])
        stream = _ChatStream(options.model_name, tokenizer, body.logprobs)
        return await _answer(request, handles, stream, body, len(prompt))

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        _check_common(body, limits)
        texts = body.prompts()
        if not 1 <= len(texts) <= limits.max_prompts:
            raise APIError(400, f"give 1 to {limits.max_prompts} prompts, got {len(texts)}", param="prompt")
        context = scheduler.engine.context
        try:
            ids, _ = encode_prompts(
                tokenizer, texts, add_bos=None, context=context, max_new_tokens=1, truncate=None
            )
        except HerdError as exc:
            raise APIError(400, str(exc), param="prompt") from None
        top = body.logprobs or 0
        jobs = [_generation(p, body, top, limits, context, "prompt") for p in ids]
        handles = _submit(scheduler, jobs)
        stream = _CompletionStream(options.model_name, tokenizer, body.logprobs is not None)
        return await _answer(request, handles, stream, body, sum(len(p) for p in ids))

    return app


ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions")


def _denied(request: Request, api_key: str | None) -> APIError | None:
    """The 401 for a ``/v1`` request without ``Authorization: Bearer API_KEY``, decided before the
    body is read, so that a client without the key gets nothing else: no parsing, no size check."""
    if api_key is None or not request.url.path.startswith("/v1/"):
        return None
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(key.encode(), api_key.encode()):
        return None
    return APIError(
        401,
        "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _validation_error(exc: RequestValidationError) -> APIError:
    """The first problem pydantic found, named by its field: ``messages.0.role: Input should be ...``."""
    first = exc.errors()[0]
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return APIError(
            400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": ")
        )
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"unrecognized request argument: {'.'.join(where)}", param=".".join(where))
    if not where:
        return APIError(400, "the body must be a JSON object (sent with Content-Type: application/json)")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return APIError(400, f"{'.'.join(where)}: {message}", param=".".join(where))


def _check_common(body: ChatCompletionRequest | CompletionRequest, limits: Limits) -> None:
    """The bounds both endpoints share: n and the stop list."""
    if body.n > limits.max_n:
        raise APIError(400, f"n must be at most {limits.max_n}, got {body.n}", param="n")
    stops = body.stop_list()
    if len(stops) > limits.max_stop:
        raise APIError(400, f"at most {limits.max_stop} stop sequences, got {len(stops)}", param="stop")
    if any(not s or len(s) > limits.max_stop_chars for s in stops):
        raise APIError(
            400, f"each stop sequence must have 1 to {limits.max_stop_chars} characters", param="stop"
        )


def _generation(
    prompt: list[int],
    body: ChatCompletionRequest | CompletionRequest,
    top_logprobs: int,
    limits: Limits,
    context: int,
    prompt_field: str,
) -> GenerationRequest:
    """The scheduler's request, after checking the prompt and ``max_tokens`` against the context."""
    requested, asked_by = body.token_limit()
    room = context - len(prompt)
    if room < 1:
        raise APIError(
            400,
            f"the prompt has {len(prompt)} tokens but the model's context is {context}",
            param=prompt_field,
            code="context_length_exceeded",
        )
    if requested is not None and requested > limits.max_tokens:
        raise APIError(
            400, f"{asked_by} must be at most {limits.max_tokens}, got {requested}", param=asked_by
        )
    if requested is not None and requested > room:
        raise APIError(
            400,
            f"the prompt ({len(prompt)} tokens) plus {asked_by} ({requested}) exceed the model's context "
            f"({context})",
            param=asked_by,
            code="context_length_exceeded",
        )
    sampling = SamplingParams(
        temperature=body.temperature, top_p=body.top_p if body.top_p < 1 else None, seed=body.seed
    )
    return GenerationRequest(
        prompt,
        requested or min(room, limits.max_tokens),
        sampling,
        body.stop_list(),
        n=body.n,
        top_logprobs=top_logprobs,
    )


def _submit(scheduler: Scheduler, jobs: list[GenerationRequest]) -> list[Handle]:
    """Queue every job, or none: a full queue is 503 with ``Retry-After``."""
    handles: list[Handle] = []
    try:
        for job in jobs:
            handles.append(scheduler.submit(job))
    except HerdError as exc:
        for handle in handles:
            handle.cancel()
        if isinstance(exc, (QueueFull, ShuttingDown)):
            raise APIError(
                503, str(exc), type="server_error", code="overloaded", headers={"Retry-After": "1"}
            ) from None
        raise APIError(400, str(exc)) from None
    return handles


async def _events(handle: Handle, request: Request | None) -> AsyncIterator[Event]:
    """The events of one request until all its choices finished; with ``request``, stop (and cancel)
    when that client has gone."""
    open_choices = handle.request.n
    while open_choices:
        if request is None:
            event = await handle.events.get()
        else:
            try:
                event = await asyncio.wait_for(handle.events.get(), DISCONNECT_POLL)
            except TimeoutError:
                if await request.is_disconnected():
                    handle.cancel()
                    return
                continue
        if isinstance(event, ErrorEvent):
            raise APIError(500, "generation failed; the server's log has the details", type="server_error")
        if isinstance(event, FinishEvent):
            open_choices -= 1
        yield event


class _Stream:
    """How one endpoint turns events into chunks and whole answers."""

    object_name = ""
    chunk_object = ""  # a streamed chunk's "object"
    id_prefix = ""
    whole_fields: ClassVar[dict[str, Any]] = {}  # more fields of a whole (not streamed) answer

    def __init__(self, model: str, tokenizer: Any, logprobs: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.logprobs = logprobs
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def envelope(self, choices: list[dict[str, Any]], chunk: bool) -> dict[str, Any]:
        """The fields around the choices."""
        return {
            "id": self.id,
            "object": self.chunk_object if chunk else self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def piece(self, token_id: int) -> str:
        """A token's text on its own (as OpenAI's logprobs list it)."""
        return str(self.tokenizer.decode([token_id]))

    def start(self, index: int) -> dict[str, Any] | None:
        """The chunk that opens choice ``index``, if the endpoint has one."""
        return None

    def delta(self, index: int, text: str, token: TokenEvent | None, finish: str | None) -> dict[str, Any]:
        """One streamed choice."""
        raise NotImplementedError

    def whole(self, index: int, choice: _Choice) -> dict[str, Any]:
        """One choice of a whole answer."""
        raise NotImplementedError


class _ChatStream(_Stream):
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"
    whole_fields: ClassVar[dict[str, Any]] = {"system_fingerprint": None}

    def _logprobs(self, tokens: list[TokenEvent]) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        return {"content": [self._entry(t.token_id, t.logprob, t.top_logprobs) for t in tokens]}

    def _entry(
        self, token_id: int, logprob: float, top: tuple[tuple[int, float], ...] = ()
    ) -> dict[str, Any]:
        entry = self._alternative(token_id, logprob)
        entry["top_logprobs"] = [self._alternative(i, lp) for i, lp in top]
        return entry

    def _alternative(self, token_id: int, logprob: float) -> dict[str, Any]:
        text = self.piece(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    def start(self, index: int) -> dict[str, Any] | None:
        return {
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }

    def delta(self, index: int, text: str, token: TokenEvent | None, finish: str | None) -> dict[str, Any]:
        delta = {"content": text} if text or finish is None else {}
        logprobs = self._logprobs([token]) if token is not None else None
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    def whole(self, index: int, choice: _Choice) -> dict[str, Any]:
        return {
            "index": index,
            "message": {"role": "assistant", "content": "".join(choice.text)},
            "logprobs": self._logprobs(choice.tokens),
            "finish_reason": choice.finish_reason,
        }


class _CompletionStream(_Stream):
    object_name = "text_completion"
    chunk_object = "text_completion"
    id_prefix = "cmpl"

    def _logprobs(self, tokens: list[TokenEvent]) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        pieces = [self.piece(t.token_id) for t in tokens]
        offsets = [0, *itertools.accumulate(len(p) for p in pieces)][: len(pieces)]
        return {
            "tokens": pieces,
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{self.piece(i): lp for i, lp in t.top_logprobs} for t in tokens],
            "text_offset": offsets,
        }

    def delta(self, index: int, text: str, token: TokenEvent | None, finish: str | None) -> dict[str, Any]:
        logprobs = self._logprobs([token]) if token is not None else None
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def whole(self, index: int, choice: _Choice) -> dict[str, Any]:
        return {
            "index": index,
            "text": "".join(choice.text),
            "logprobs": self._logprobs(choice.tokens),
            "finish_reason": choice.finish_reason,
        }


def _indexed(handles: list[Handle]) -> Iterator[tuple[int, Handle]]:
    """Each handle with the index of its first choice (prompt ``i``'s choices follow each other)."""
    offset = 0
    for handle in handles:
        yield offset, handle
        offset += handle.request.n


async def _answer(
    request: Request,
    handles: list[Handle],
    stream: _Stream,
    body: ChatCompletionRequest | CompletionRequest,
    prompt_tokens: int,
) -> Response:
    """The streamed (server-sent events) or whole answer to the submitted ``handles``."""
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(
            _sse(handles, stream, include_usage, prompt_tokens),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    choices: dict[int, _Choice] = {}
    generated = 0
    try:
        for offset, handle in _indexed(handles):
            async for event in _events(handle, request):
                choice = choices.setdefault(offset + event.index, _Choice())
                choice.text.append(event.text)
                if isinstance(event, TokenEvent):
                    choice.tokens.append(event)
                elif isinstance(event, FinishEvent):
                    choice.finish_reason = event.finish_reason
                    generated += event.tokens
            if handle.cancelled:
                return Response(status_code=499)
    finally:
        for handle in handles:
            handle.cancel()
    body_out = stream.envelope([stream.whole(i, choices[i]) for i in sorted(choices)], chunk=False)
    body_out["usage"] = _usage(prompt_tokens, generated)
    return JSONResponse({**body_out, **stream.whole_fields})


def _usage(prompt_tokens: int, generated: int) -> dict[str, int]:
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=generated, total_tokens=prompt_tokens + generated
    ).model_dump()


async def _sse(
    handles: list[Handle], stream: _Stream, include_usage: bool, prompt_tokens: int
) -> AsyncIterator[str]:
    """Server-sent events: one chunk per token, a last chunk per choice with its finish reason,
    the usage if asked, then ``[DONE]``. A client that disconnects cancels the generator, which
    frees the rows of its requests."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**stream.envelope(choices, chunk=True), **extra})}\n\n"

    generated = 0
    try:
        for offset, handle in _indexed(handles):
            for i in range(handle.request.n):
                opening = stream.start(offset + i)
                if opening is not None:
                    yield event([opening])
            try:
                async for item in _events(handle, None):
                    if isinstance(item, TokenEvent):
                        if item.text or stream.logprobs:
                            yield event([stream.delta(offset + item.index, item.text, item, None)])
                    elif isinstance(item, FinishEvent):
                        generated += item.tokens
                        yield event([stream.delta(offset + item.index, item.text, None, item.finish_reason)])
            except APIError as exc:
                yield f"data: {json.dumps({'error': {'message': exc.message, 'type': exc.type}})}\n\n"
                return
        if include_usage:
            yield event([], usage=_usage(prompt_tokens, generated))
        yield "data: [DONE]\n\n"
    finally:
        for handle in handles:
            handle.cancel()


class _BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length or while reading.

    The body is read whole here, before the application sees it: FastAPI turns any error raised
    while it reads a body into 400 "error parsing the body", so a chunked body over the bound must
    be answered before that.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = APIError(
            413, f"the request body is larger than {self.max_bytes} bytes", code="body_too_large"
        )
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await too_big.response()(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        message = await receive()
        while message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                await too_big.response()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
            message = await receive()
        whole: Message = (
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            if message["type"] == "http.request"
            else message
        )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return whole

        await self.app(scope, replay, send)
