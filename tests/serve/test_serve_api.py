"""herd serve through the official ``openai`` client, on the real SmolLM2-135M-Instruct: what it answers
equals what ``herd generate`` and ``herd chat`` produce for greedy decoding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from serve_helpers import running_server

import herd
from herd.infer.chat_session import chat
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.model.transformer import Transformer
from herd.serve.app import ServeOptions
from herd.serve.scheduler import Scheduler
from herd.tokenizer.base import Tokenizer

# Prompts of different lengths and kinds (prose, code, a question), so that streams end at different steps.
PROMPTS = [
    "The capital of Italy is",
    "Once upon a time, in a quiet mountain village, an old llama",
    "def is_prime(n):\n",
    "Q: How many legs does a spider have?\nA:",
    "The three primary colors are",
    "The first person to walk on the moon",
    "My favourite recipe for bread",
    "The best way to learn Python is",
]
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def smollm2_model(smollm2_gguf: Path) -> tuple[Transformer, Tokenizer]:
    return load_for_inference(str(smollm2_gguf))


@pytest.fixture(scope="module")
def server(smollm2_model: tuple[Transformer, Tokenizer]) -> Iterator[str]:
    model, tokenizer = smollm2_model
    scheduler = Scheduler(Engine(model), tokenizer, max_batch=16)
    with running_server(scheduler, ServeOptions("smollm2")) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["smollm2"]


def test_greedy_chat_equals_herd_chat(
    client: openai.OpenAI, smollm2_model: tuple[Transformer, Tokenizer]
) -> None:
    model, tokenizer = smollm2_model
    reply = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, temperature=0)
    expected = chat(Engine(model), tokenizer, QUESTION, max_new_tokens=24)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.prompt_tokens > 10
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_greedy_completion_equals_herd_generate(
    client: openai.OpenAI, smollm2_model: tuple[Transformer, Tokenizer]
) -> None:
    model, tokenizer = smollm2_model
    answer = client.completions.create(model="smollm2", prompt=PROMPTS[0], max_tokens=16, temperature=0)
    expected = herd.generate(model, tokenizer, PROMPTS[0], max_new_tokens=16)[0]
    assert answer.choices[0].text == expected.text
    assert answer.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert answer.usage is not None
    assert answer.usage.completion_tokens == len(expected.token_ids)
    assert answer.usage.prompt_tokens == expected.prompt_tokens


def test_a_stream_carries_the_same_text_then_the_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=20, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=QUESTION,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert len(chunks) > 5  # token by token


def test_n_choices_with_a_seed_are_reproducible(client: openai.OpenAI) -> None:
    def ask() -> list[str]:
        answer = client.completions.create(
            model="smollm2", prompt=PROMPTS[1], max_tokens=12, temperature=1.0, top_p=0.95, n=3, seed=7
        )
        assert [c.index for c in answer.choices] == [0, 1, 2]
        return [c.text for c in answer.choices]

    first = ask()
    assert ask() == first
    assert len(set(first)) > 1  # three different samples


def test_a_stop_sequence_ends_the_text_before_it(client: openai.OpenAI) -> None:
    full = client.completions.create(model="smollm2", prompt=PROMPTS[4], max_tokens=24, temperature=0)
    text = full.choices[0].text
    words = text.split()
    stop = words[len(words) // 2]
    cut = client.completions.create(
        model="smollm2", prompt=PROMPTS[4], max_tokens=24, temperature=0, stop=[stop, "zzz"]
    )
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="smollm2", prompt=PROMPTS[4], max_tokens=24, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text


def test_logprobs_are_the_models_own(
    client: openai.OpenAI, smollm2_model: tuple[Transformer, Tokenizer]
) -> None:
    """The chosen tokens' log-probabilities equal herd generate's; the top alternatives are sorted and
    the greedy choice is the first of them."""
    model, tokenizer = smollm2_model
    expected = herd.generate(model, tokenizer, PROMPTS[2], max_new_tokens=10)[0]
    answer = client.completions.create(
        model="smollm2", prompt=PROMPTS[2], max_tokens=10, temperature=0, logprobs=3
    )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs is not None and logprobs.top_logprobs is not None
    assert logprobs.token_logprobs == pytest.approx(
        expected.logprobs[: len(logprobs.token_logprobs)], abs=1e-4
    )
    assert "".join(logprobs.tokens or []) == answer.choices[0].text
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        values = list(top.values())
        assert values == sorted(values, reverse=True) and values[0] == pytest.approx(chosen, abs=1e-5)
    reply = client.chat.completions.create(
        model="smollm2", messages=QUESTION, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2
    )
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 8
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(
        len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-5)
        for t in content
    )


def test_sixteen_concurrent_streams_each_get_their_own_answer(
    server: str, smollm2_model: tuple[Transformer, Tokenizer]
) -> None:
    """16 streaming clients at once (8 prompts, each twice); every stream's text is the prompt's greedy
    continuation computed alone, so no stream saw another's tokens."""
    model, tokenizer = smollm2_model
    expected = {p: herd.generate(model, tokenizer, p, max_new_tokens=12)[0].text for p in PROMPTS}
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)

    async def one(prompt: str) -> str:
        stream = await client.completions.create(
            model="smollm2", prompt=prompt, max_tokens=12, temperature=0, stream=True
        )
        return "".join([c.choices[0].text async for c in stream])

    async def all_at_once() -> list[str]:
        return await asyncio.gather(*(one(p) for p in PROMPTS * 2))

    texts = asyncio.run(all_at_once())
    assert texts == [expected[p] for p in PROMPTS * 2]
    metrics = httpx.get(f"{server}/metrics").text
    assert 'herd_requests_total{route="/v1/completions",status="200"}' in metrics
    count = next(
        line for line in metrics.splitlines() if line.startswith("herd_time_to_first_token_seconds_count")
    )
    assert float(count.split()[-1]) >= 16
