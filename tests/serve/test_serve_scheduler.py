"""Continuous batching: every request's tokens equal what the one-request generation loop gives it alone."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from herd.errors import HerdError
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.engine import Engine
from herd.infer.generate import generate_ids
from herd.infer.sampling import SamplingParams
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.serve.scheduler import (
    ErrorEvent,
    FinishEvent,
    Handle,
    QueueFull,
    Request,
    Scheduler,
    ShuttingDown,
    TokenEvent,
)

TOKENIZER = ByteTokenizer()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A tiny random model with peaked distributions (std 0.2), so greedy choices are clear-cut."""
    config = get_preset("llama2-tiny").replace(vocab_size=TOKENIZER.vocab_size, max_seq_len=256)
    built = build_model(config, seed=0)
    built.init_weights(std=0.2, seed=3)
    return built.eval()


def prompts(count: int, seed: int = 0) -> list[list[int]]:
    """Prompts of 3 to 40 byte tokens (no BOS or EOS inside)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 41, (count,), generator=g).tolist()
    return [torch.randint(3, TOKENIZER.vocab_size, (n,), generator=g).tolist() for n in lengths]


def alone(
    model: torch.nn.Module, prompt: list[int], max_tokens: int, sampling: SamplingParams | None = None
) -> list[int]:
    """herd's one-batch generation loop on this prompt alone, without the stop token it may end with."""
    out = generate_ids(
        Engine(model),
        [prompt],
        max_new_tokens=max_tokens,
        sampling=sampling,
        stop_ids=TOKENIZER.stop_ids,
        vocab_limit=TOKENIZER.vocab_size,
    )[0]
    return [t for t in out.token_ids if t not in TOKENIZER.stop_ids]


async def collect(handle: Handle) -> dict[int, tuple[list[int], str]]:
    """Each choice's token ids and finish reason, once all have finished."""
    tokens: dict[int, list[int]] = {}
    reasons: dict[int, str] = {}
    while len(reasons) < handle.request.n:
        event = await asyncio.wait_for(handle.events.get(), 60)
        if isinstance(event, TokenEvent):
            tokens.setdefault(event.index, []).append(event.token_id)
        elif isinstance(event, FinishEvent):
            reasons[event.index] = event.finish_reason
        else:
            raise AssertionError(event)
    return {i: (tokens.get(i, []), reasons[i]) for i in reasons}


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_greedy_output_is_the_same_alone_and_in_a_batch_of_16(model: torch.nn.Module) -> None:
    """16 requests of different prompt lengths and token budgets leave the batch at different steps;
    each gets exactly the tokens the one-request loop gives it (rows move down as others retire)."""
    requests = [Request(p, max_tokens=5 + 3 * i) for i, p in enumerate(prompts(16))]

    async def main() -> list[list[int]]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=16)
        handles = [scheduler.submit(r) for r in requests]
        results = [await collect(h) for h in handles]
        await asyncio.to_thread(scheduler.close)
        assert scheduler.stats.steps < sum(r.max_tokens for r in requests) / 4  # decoded together
        return [r[0][0] for r in results]

    batched = run(main())
    for request, got in zip(requests, batched, strict=True):
        assert got == alone(model, request.prompt, request.max_tokens)


def test_a_request_joins_a_running_batch_and_leaves_before_it(model: torch.nn.Module) -> None:
    """B arrives while A decodes, is prefilled between two of A's steps, and finishes first."""
    a, b = prompts(2, seed=1)

    async def main() -> tuple[list[int], list[int], int, int]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=4)
        first = scheduler.submit(Request(a, max_tokens=60))
        seen_a = 0
        while seen_a < 5:
            event = await first.events.get()
            seen_a += isinstance(event, TokenEvent)
        second = scheduler.submit(Request(b, max_tokens=8))
        got_b = await collect(second)
        while scheduler.running == 2:  # B's row retires right after its last event is sent
            await asyncio.sleep(0.001)
        running_when_b_done = scheduler.running
        got_a = await collect(first)
        await asyncio.to_thread(scheduler.close)
        return got_a[0][0], got_b[0][0], running_when_b_done, scheduler.stats.steps

    tail_a, got_b, running, steps = run(main())
    assert got_b == alone(model, b, 8)
    assert alone(model, a, 60)[5:] == tail_a
    assert running == 1  # A still decoding when B had left
    assert steps < 60 + 8 - 2


def test_a_long_prompt_is_prefilled_in_chunks_while_the_batch_keeps_decoding(model: torch.nn.Module) -> None:
    """With 8-token prefill chunks a 120-token prompt takes 15 steps, during which A keeps producing."""
    a = prompts(1, seed=2)[0]
    long_prompt = (prompts(4, seed=3)[0] * 40)[:120]

    async def main() -> tuple[list[int], list[int], int]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=2, prefill_chunk=8)
        first = scheduler.submit(Request(a, max_tokens=100))
        await first.events.get()
        second = scheduler.submit(Request(long_prompt, max_tokens=6))
        a_tokens_before_b = 0
        while True:  # count A's tokens until B's first
            event = await first.events.get()
            a_tokens_before_b += isinstance(event, TokenEvent)
            if not second.events.empty():
                break
        got_b = await collect(second)
        await collect(first)
        await asyncio.to_thread(scheduler.close)
        return got_b[0][0], long_prompt, a_tokens_before_b

    got_b, prompt_b, overlapped = run(main())
    assert got_b == alone(model, prompt_b, 6)
    assert overlapped >= 120 // 8 // 2  # one chunk per step; one prefill of it all would overlap ~1


def test_n_choices_share_one_prefill_and_sample_with_seed_plus_index(model: torch.nn.Module) -> None:
    """n=3 prefills once (prompt tokens counted once); choice j samples as the loop's row j does,
    with seed + j, and greedy choices are all the same."""
    prompt = prompts(1, seed=4)[0]
    sampling = SamplingParams(temperature=0.9, top_p=0.9, seed=11)

    async def main() -> tuple[dict[int, tuple[list[int], str]], dict[int, tuple[list[int], str]], int]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=4)
        sampled = await collect(scheduler.submit(Request(prompt, 12, sampling, n=3)))
        greedy = await collect(scheduler.submit(Request(prompt, 12, n=2)))
        await asyncio.to_thread(scheduler.close)
        return sampled, greedy, scheduler.stats.prompt_tokens

    sampled, greedy, prompt_tokens = run(main())
    assert prompt_tokens == 2 * len(prompt)
    reference = generate_ids(
        Engine(model),
        [prompt],
        max_new_tokens=12,
        sampling=sampling,
        stop_ids=TOKENIZER.stop_ids,
        vocab_limit=TOKENIZER.vocab_size,
        num_samples=3,
    )
    for j in range(3):
        assert sampled[j][0] == [t for t in reference[j].token_ids if t not in TOKENIZER.stop_ids]
    assert len({tuple(sampled[j][0]) for j in range(3)}) > 1
    assert greedy[0][0] == greedy[1][0] == alone(model, prompt, 12)


def test_a_cancelled_request_frees_its_row_for_the_next(model: torch.nn.Module) -> None:
    """With one row, a cancelled stream leaves it at the next step and the waiting request runs."""
    a, b = prompts(2, seed=5)

    async def main() -> list[int]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=1, max_queue=1)
        first = scheduler.submit(Request(a, max_tokens=200))
        await first.events.get()
        second = scheduler.submit(Request(b, max_tokens=7))
        first.cancel()
        got = await asyncio.wait_for(collect(second), 30)
        await asyncio.to_thread(scheduler.close)
        assert scheduler.stats.steps < 100
        return got[0][0]

    assert run(main()) == alone(model, b, 7)


def test_a_full_queue_refuses_and_a_closing_scheduler_drains(model: torch.nn.Module) -> None:
    """One row, one waiting place: the third request is refused; close() lets both finish."""
    a, b, c = prompts(3, seed=6)

    async def main() -> None:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=1, max_queue=1)
        first = scheduler.submit(Request(a, max_tokens=30))
        await first.events.get()
        second = scheduler.submit(Request(b, max_tokens=5))
        with pytest.raises(QueueFull, match="busy"):
            scheduler.submit(Request(c, max_tokens=5))
        closing = asyncio.create_task(asyncio.to_thread(scheduler.close))
        await asyncio.sleep(0.05)
        with pytest.raises(ShuttingDown):
            scheduler.submit(Request(c, max_tokens=5))
        assert (await collect(second))[0] == (alone(model, b, 5), "length")
        assert len((await collect(first))[0][0]) == 29  # the first token was read above
        await closing

    run(main())


def test_stop_strings_and_the_context_end_a_choice(model: torch.nn.Module) -> None:
    """A stop string ends the choice ('stop') with the string not emitted; the context ends one too."""
    prompt = prompts(1, seed=7)[0]
    reference = alone(model, prompt, 20)
    text = TOKENIZER.decode(reference)
    stop = text[6:9]

    async def main() -> tuple[str, str, list[int], str]:
        scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=2)
        handle = scheduler.submit(Request(prompt, 20, stop=[stop]))
        pieces = []
        reason = ""
        while not reason:
            event = await handle.events.get()
            pieces.append(event.text)
            reason = event.finish_reason if isinstance(event, FinishEvent) else ""
        near_end = scheduler.submit(Request(prompt * 10 + prompt[: 256 - 10 * len(prompt) - 4], 50))
        got = await collect(near_end)
        await asyncio.to_thread(scheduler.close)
        return "".join(pieces), reason, got[0][0], got[0][1]

    emitted, reason, tail, tail_reason = run(main())
    assert reason == "stop"
    assert emitted == text[: text.find(stop)]
    if len(tail) == 4:  # no stop token within the last 4 positions of the context
        assert tail_reason == "length"


def test_bad_requests_are_refused_at_submission(model: torch.nn.Module) -> None:
    scheduler = Scheduler(Engine(model), TOKENIZER, max_batch=2)
    try:
        with pytest.raises(HerdError, match="context is 256"):
            scheduler.submit(Request([5] * 300, 4))
        with pytest.raises(HerdError, match="n=3 is more than the server's batch of 2"):
            scheduler.submit(Request([5, 6], 4, n=3))
        with pytest.raises(HerdError, match="outside the model's vocabulary"):
            scheduler.submit(Request([5, 100_000], 4))
    finally:
        scheduler.close()
    with pytest.raises(HerdError, match="max_batch"):
        Scheduler(Engine(model), TOKENIZER, max_batch=0)


def test_the_latency_callbacks_see_every_token(model: torch.nn.Module) -> None:
    first: list[float] = []
    gaps: list[float] = []

    async def main() -> None:
        scheduler = Scheduler(Engine(model), TOKENIZER, on_first_token=first.append, on_token=gaps.append)
        started = time.perf_counter()
        await collect(scheduler.submit(Request(prompts(1, seed=8)[0], 10)))
        assert 0 < first[0] < time.perf_counter() - started
        await asyncio.to_thread(scheduler.close)

    run(main())
    assert len(first) == 1 and len(gaps) == 9 and all(g >= 0 for g in gaps)


def test_a_failing_model_ends_open_requests_with_an_error_and_refuses_new_ones(
    model: torch.nn.Module,
) -> None:
    """The model raising mid-decode (out of memory, say): each open request gets an ErrorEvent, the
    thread ends without an unhandled exception, and later submissions are refused as a stopping server."""
    engine = Engine(model)

    def broken(tokens: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    engine.decode_slots = broken  # type: ignore[method-assign]

    async def main() -> None:
        scheduler = Scheduler(engine, TOKENIZER, max_batch=2)
        handle = scheduler.submit(Request(prompts(1, seed=9)[0], 10))
        events = [await asyncio.wait_for(handle.events.get(), 30) for _ in range(2)]
        assert isinstance(events[0], TokenEvent)  # the first token comes from the prefill
        assert isinstance(events[1], ErrorEvent) and "out of memory" in events[1].message
        with pytest.raises(ShuttingDown, match="takes no more requests"):
            scheduler.submit(Request([5, 6], 2))
        await asyncio.to_thread(scheduler.close)

    run(main())
