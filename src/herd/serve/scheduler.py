"""Continuous batching: requests join the running decode batch between steps and leave when done.

A server that runs one request at a time, or one fixed batch until its longest
member ends, leaves the model idle while clients wait. Continuous batching
(Yu et al. 2022, "Orca: A Distributed Serving System for Transformer-Based
Generative Models", iteration-level scheduling) decides again after every
decode step: finished sequences leave at once, waiting requests are prefilled
and join, and each sequence keeps its own sampling parameters, stop strings
and KV-cache row. One scheduler thread owns the :class:`herd.infer.engine.Engine`
and repeats:

1. drop the sequences whose client went away (their rows are free at once);
2. admit waiting requests while rows are free, prefilling at most
   ``prefill_chunk`` prompt tokens per step, so that a long prompt does not
   stall the running streams (chunked prefill; a prompt longer than that is
   spread over several steps);
3. decode one token for every running sequence in one ragged batch
   (:meth:`Engine.decode_slots`: each row at its own length, no padding);
4. sample each row with its own sampler, detokenize, send the text to its
   request's event queue, and retire the rows that stopped.

Rows stay packed: the running sequences hold rows ``0..n`` and a retiring row
is refilled by moving the last one down (one copy of its cached columns). The
request being prefilled writes to the top row, then is copied into the rows of
its ``n`` choices. Greedy output does not depend on the company: every row
attends over its own columns only, so a request gives the same tokens alone
or in a batch of 16.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from herd.errors import HerdError
from herd.infer.detokenize import TextStream
from herd.infer.engine import Engine
from herd.infer.generate import FinishReason, check_prompts
from herd.infer.sampling import Sampler, SamplingParams, token_logprobs
from herd.tokenizer.base import Tokenizer

# Prompt tokens prefilled between two decode steps (step 2 above).
PREFILL_CHUNK = 256
log = logging.getLogger("herd.serve")


class QueueFull(HerdError):
    """Every row is busy and the waiting line is at its bound: the client should retry later."""


class ShuttingDown(HerdError):
    """The server is stopping and takes no new requests."""


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of choice ``index``: its text (possibly empty while a character is
    incomplete or a stop string may be starting), id, log-probability and top alternatives."""

    index: int
    text: str
    token_id: int
    logprob: float
    top_logprobs: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class FinishEvent:
    """Choice ``index`` ended after generating ``tokens`` tokens (a stop token included, though it
    sent no :class:`TokenEvent`); ``text`` is what the stream held back until now."""

    index: int
    text: str
    finish_reason: FinishReason
    tokens: int


@dataclass(frozen=True)
class ErrorEvent:
    """The model failed while the request ran; the server answers it with an error."""

    message: str


Event = TokenEvent | FinishEvent | ErrorEvent


@dataclass
class Request:
    """One API request: a prompt, how many choices, and how to generate them."""

    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: Sequence[str] = ()
    n: int = 1
    top_logprobs: int = 0


class Handle:
    """The caller's side of a submitted request: an asyncio queue of events, and cancel().

    Events arrive from the scheduler thread through the event loop that submitted
    the request; after the last choice's :class:`FinishEvent` nothing more comes.
    """

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop | None) -> None:
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = False
        self.submitted = time.perf_counter()
        self.first_token: float | None = None

    def cancel(self) -> None:
        """The client went away: the scheduler frees the request's rows before its next step."""
        self.cancelled = True

    def _send(self, event: Event) -> None:
        if self.loop is None:
            self.events.put_nowait(event)
        else:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class _Sequence:
    """One choice of a request while it holds a cache row."""

    handle: Handle
    index: int
    sampler: Sampler
    stream: TextStream
    length: int  # cached columns
    budget: int  # tokens it may still produce (max_tokens, or what the context leaves)
    token: int = 0  # the last sampled token, fed at the next decode step
    produced: int = 0
    last_time: float = 0.0  # when its last token was sampled


@dataclass
class _Prefill:
    """The request whose prompt is being written to the top row, ``done`` tokens so far."""

    handle: Handle
    done: int = 0


@dataclass
class Stats:
    """Counters the metrics page reads (the scheduler thread writes them)."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0


class Scheduler:
    """Runs an engine for many requests at once; :meth:`submit` from any thread or event loop."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Tokenizer,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        prefill_chunk: int = PREFILL_CHUNK,
        on_first_token: Callable[[float], None] | None = None,
        on_token: Callable[[float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 0 or prefill_chunk < 1:
            raise HerdError(
                f"max_batch and prefill_chunk must be >= 1 and max_queue >= 0, got "
                f"{max_batch}, {prefill_chunk}, {max_queue}"
            )
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.prefill_chunk = prefill_chunk
        self.stop_ids = frozenset(tokenizer.stop_ids)
        self.vocab = min(tokenizer.vocab_size, engine.vocab_size)
        self.stats = Stats()
        self.on_first_token = on_first_token
        self.on_token = on_token
        self._waiting: deque[Handle] = deque()
        self._running: list[_Sequence] = []
        self._prefill: _Prefill | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="herd-scheduler", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        """Sequences decoding now."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Requests not yet admitted (the one being prefilled included)."""
        return len(self._waiting) + (self._prefill is not None)

    def submit(self, request: Request) -> Handle:
        """Queue ``request``; its events arrive on the returned handle. Raises :class:`QueueFull`
        when the waiting line is at its bound and :class:`ShuttingDown` after :meth:`close`."""
        if request.n > self.max_batch:
            raise HerdError(f"n={request.n} is more than the server's batch of {self.max_batch}")
        check_prompts([request.prompt], self.engine.context, self.vocab)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        handle = Handle(request, loop)
        with self._wake:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if self._error is not None:
                raise ShuttingDown(f"the model failed and the server takes no more requests: {self._error}")
            if len(self._waiting) >= self.max_queue and self._busy():
                raise QueueFull(
                    f"the server is busy: all {self.max_batch} rows are generating and "
                    f"{len(self._waiting)} requests wait (its bound is {self.max_queue}); retry shortly"
                )
            self._waiting.append(handle)
            self._wake.notify()
        return handle

    def _busy(self) -> bool:
        return len(self._running) >= self.max_batch or self._prefill is not None

    def close(self, timeout: float | None = None) -> None:
        """Finish what is running and waiting, take nothing new, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._wake:
                        while not (self._waiting or self._running or self._prefill):
                            if self._closing:
                                return
                            self._wake.wait()
                    self._step()
        except Exception as exc:
            # the model failed: every open request gets an error event, the log the traceback
            self._error = exc
            self._fail_all()
            log.exception("the scheduler stopped")

    def _fail_all(self) -> None:
        handles = {s.handle for s in self._running} | set(self._waiting)
        if self._prefill is not None:
            handles.add(self._prefill.handle)
        for handle in handles:
            handle._send(ErrorEvent(f"generation failed: {self._error}"))

    def _step(self) -> None:
        """One iteration: 1. drop cancelled, 2. prefill a chunk, 3. decode, 4. sample and retire."""
        self._drop_cancelled()
        self._admit()
        if self._running:
            columns = torch.tensor([s.length for s in self._running], device=self.engine.device)
            tokens = torch.tensor([s.token for s in self._running], device=self.engine.device)
            logits = self.engine.decode_slots(tokens, columns)
            for s in self._running:
                s.length += 1
            self.stats.steps += 1
            self._emit(self._running, logits)

    def _drop_cancelled(self) -> None:
        with self._wake:
            self._waiting = deque(h for h in self._waiting if not h.cancelled)
        if self._prefill is not None and self._prefill.handle.cancelled:
            self._prefill = None
        self._retire([s for s in self._running if s.handle.cancelled])

    def _admit(self) -> None:
        """Prefill up to ``prefill_chunk`` prompt tokens of waiting requests and start those done.

        A prompt longer than the budget is prefilled alone, one chunk per step, in the top row;
        shorter ones are prefilled together, as many as the budget and the free rows take, in the
        top rows (one forward for all: a batch of prompts keeps the cores busier than one).
        """
        budget = self.prefill_chunk
        if self._prefill is not None:
            job = self._prefill
            prompt = job.handle.request.prompt
            chunk = prompt[job.done : job.done + budget]
            logits = self.engine.prefill_slots(self.max_batch - 1, [chunk], job.done)
            job.done += len(chunk)
            budget -= len(chunk)
            if job.done < len(prompt):
                return
            self._prefill = None
            self._start([job.handle], logits)
        batch = self._take_waiting(budget)
        if batch:
            prompts = [h.request.prompt for h in batch]
            self._start(batch, self.engine.prefill_slots(self.max_batch - len(batch), prompts))

    def _take_waiting(self, budget: int) -> list[Handle]:
        """The waiting requests to prefill now, in order: those whose prompts fit ``budget`` together
        and whose choices fit the free rows; a first prompt over the budget becomes the chunked job."""
        taken: list[Handle] = []
        rows = len(self._running)
        with self._wake:
            while self._waiting and budget > 0:
                request = self._waiting[0].request
                if rows + request.n > self.max_batch:
                    break
                if len(request.prompt) > budget:
                    if not taken and budget == self.prefill_chunk:
                        self._prefill = _Prefill(self._waiting.popleft())
                    break
                taken.append(self._waiting.popleft())
                rows += request.n
                budget -= len(request.prompt)
        return taken

    def _start(self, handles: list[Handle], logits: torch.Tensor) -> None:
        """Give the prefilled requests' choices their rows and sample their first tokens.

        Request ``i`` was prefilled in row ``max_batch - len(handles) + i``; its choices take the
        next free rows. Copied in order, no copy overwrites a row not yet copied: the running rows
        and all choices fit in ``max_batch``, so every earlier request's rows lie below every later
        request's prefill row.
        """
        first_prefill_row = self.max_batch - len(handles)
        new: list[_Sequence] = []
        prefilled: list[int] = []  # the logits row of each new sequence
        for i, handle in enumerate(handles):
            request = handle.request
            length = len(request.prompt)
            budget = min(request.max_tokens, self.engine.context - length)
            self.stats.prompt_tokens += length
            source = first_prefill_row + i
            for j in range(request.n):
                params = request.sampling
                if params.seed is not None:
                    params = dataclasses.replace(params, seed=params.seed + j)
                sampler = Sampler(params, 1, self.vocab, self.engine.device)
                sampler.observe_prompts([request.prompt])
                row = len(self._running) + len(new)
                if row != source:
                    self.engine.copy_slot(source, row, length)
                stream = TextStream(self.tokenizer, request.prompt, request.stop)
                new.append(_Sequence(handle, j, sampler, stream, length, budget))
                prefilled.append(i)
        self._running.extend(new)
        self._emit(new, logits[torch.tensor(prefilled, device=logits.device)])

    def _emit(self, sequences: list[_Sequence], logits: torch.Tensor) -> None:
        """Sample a token for each sequence (row ``i`` of ``logits``), send it, retire the finished."""
        logits = logits[:, : self.vocab]
        chosen = [s.sampler.sample(logits[i : i + 1]) for i, s in enumerate(sequences)]
        tokens = torch.cat(chosen)
        logprobs = token_logprobs(logits, tokens).tolist()
        wanted = max(s.handle.request.top_logprobs for s in sequences)
        top = None
        if wanted:  # as token_logprobs computes them: logit minus log-sum-exp
            values, indices = logits.float().topk(wanted, dim=-1)
            top = (values - logits.float().logsumexp(-1, keepdim=True), indices)
        now = time.perf_counter()
        done = []
        for i, s in enumerate(sequences):
            token = int(tokens[i])
            s.sampler.observe(tokens[i : i + 1])
            s.token = token
            s.produced += 1
            handle = s.handle
            if handle.first_token is None:
                handle.first_token = now
                if self.on_first_token is not None:
                    self.on_first_token(now - handle.submitted)
            elif s.produced > 1 and self.on_token is not None:
                self.on_token(now - s.last_time)
            s.last_time = now
            self.stats.generated_tokens += 1
            reason: FinishReason | None = None
            if token in self.stop_ids:
                reason = "stop"
            else:
                alternatives: tuple[tuple[int, float], ...] = ()
                k = handle.request.top_logprobs
                if top is not None and k:
                    ids, values = top[1][i, :k].tolist(), top[0][i, :k].tolist()
                    alternatives = tuple(zip(ids, values, strict=True))
                text = s.stream.push(token)
                handle._send(TokenEvent(s.index, text, token, logprobs[i], alternatives))
                if s.stream.stopped:
                    reason = "stop"
                elif s.produced >= s.budget:
                    reason = "length"
            if reason is not None:
                handle._send(FinishEvent(s.index, s.stream.finish(), reason, s.produced))
                done.append(s)
        self._retire(done)

    def _retire(self, finished: list[_Sequence]) -> None:
        """Free the rows of ``finished``, keeping the running rows packed at ``0..n``."""
        if not finished:
            return
        gone = {id(s) for s in finished}
        for row in sorted((i for i, s in enumerate(self._running) if id(s) in gone), reverse=True):
            last = len(self._running) - 1
            if row != last:
                moved = self._running[last]
                self.engine.copy_slot(last, row, moved.length)
                self._running[row] = moved
            self._running.pop()
