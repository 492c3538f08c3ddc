"""The token-level generation loop: prefill, then sample and decode until every row stops.

A row stops at the first of: one of its stop ids (kept as its last token, as
``transformers.generate`` does), its ``on_token`` callback asking to stop (the
text layer uses this for stop strings), ``max_new_tokens`` ("length"), or the
model's context window ("context": the prompt plus the output fill
``max_seq_len`` positions). Rows that stopped keep riding along in the batch
until all have stopped; their extra tokens are discarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from herd.errors import HerdError
from herd.infer.engine import Engine, PaddedBatch
from herd.infer.sampling import Sampler, SamplingParams, token_logprobs

FinishReason = Literal["stop", "length", "context"]
# Called with (row, token id, logprob) for every generated token that is not a stop id;
# returning True stops that row.
TokenCallback = Callable[[int, int, float], bool]


@dataclass
class Generated:
    """The output of one prompt: new token ids, their logprobs, and why generation ended.

    ``prefill_seconds`` runs to the first token, ``decode_seconds`` from there to the
    last; both are wall-clock times of the whole batch.
    """

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: FinishReason = "length"
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


def check_max_new_tokens(max_new_tokens: int) -> None:
    """Raise :class:`HerdError` unless ``max_new_tokens`` is a positive integer."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise HerdError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


def check_prompts(prompts: Sequence[Sequence[int]], context: int, vocab_size: int) -> None:
    """Raise :class:`HerdError` for an empty batch, an empty prompt, bad ids, or a prompt that fills the context."""
    if not prompts:
        raise HerdError("no prompts to generate from")
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise HerdError(f"prompt {i} is empty")
        if min(prompt) < 0 or max(prompt) >= vocab_size:
            bad = next(t for t in prompt if not 0 <= t < vocab_size)
            raise HerdError(f"prompt {i}: token id {bad} is outside the model's vocabulary [0, {vocab_size})")
        if len(prompt) >= context:
            raise HerdError(
                f"prompt {i} has {len(prompt)} tokens but the model's context is {context}; "
                "shorten it or truncate it from the left"
            )


def generate_ids(
    engine: Engine,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    sampling: SamplingParams | None = None,
    stop_ids: Collection[int] = (),
    on_token: TokenCallback | None = None,
    vocab_limit: int | None = None,
    num_samples: int = 1,
) -> list[Generated]:
    """Generate from each prompt (lists of token ids) in one left-padded batch.

    ``vocab_limit`` restricts the choice to ids below it: a model may have more
    embedding rows than its tokenizer has ids (padded vocabularies).

    ``num_samples`` K > 1 draws K continuations of every prompt (rejection
    sampling's K samples per prompt, Llama 2 §3.2.3) while running each prompt
    through the model once: the prefill's KV cache rows are copied to the K
    rows of its samples (:meth:`Engine.prefill` with ``copies``). The result
    has ``len(prompts) * K`` entries, sample ``j`` of prompt ``i`` at
    ``i * K + j``, and equals generating from the list with each prompt
    repeated K times: row ``i * K + j`` samples with seed ``seed + i * K + j``,
    and ``on_token`` receives that row number.
    """
    sampling = sampling or SamplingParams()
    check_max_new_tokens(max_new_tokens)
    check_prompts(prompts, engine.context, engine.vocab_size)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise HerdError(f"num_samples must be a positive integer, got {num_samples!r}")
    rows = [list(p) for p in prompts for _ in range(num_samples)]
    budgets = [min(max_new_tokens, engine.context - len(p)) for p in rows]
    steps = max(budgets)
    stops = frozenset(stop_ids)
    results = [Generated() for _ in rows]
    active = set(range(len(rows)))
    started = time.perf_counter()
    first_token = started
    with torch.inference_mode():
        batch = PaddedBatch(prompts, pad_id=prompts[0][0], device=engine.device)
        sampler = Sampler(sampling, len(rows), vocab_limit or engine.vocab_size, engine.device)
        sampler.observe_prompts(rows)
        logits = engine.prefill(batch, steps, copies=num_samples)
        batch = batch.repeat_rows(num_samples)
        for step in range(steps):
            logits = logits[:, :vocab_limit]
            tokens = sampler.sample(logits)
            sampler.observe(tokens)
            chosen = tokens.tolist()
            logprobs = token_logprobs(logits, tokens).tolist()
            if step == 0:
                first_token = time.perf_counter()
            for row in sorted(active):
                result = results[row]
                token = chosen[row]
                result.token_ids.append(token)
                result.logprobs.append(logprobs[row])
                if token in stops or (on_token is not None and on_token(row, token, logprobs[row])):
                    result.finish_reason = "stop"
                elif len(result.token_ids) == budgets[row]:
                    result.finish_reason = "length" if budgets[row] == max_new_tokens else "context"
                else:
                    continue
                active.discard(row)
            if not active:
                break
            logits = engine.decode(batch, tokens, batch.width + step)
    finished = time.perf_counter()
    for result in results:
        result.prefill_seconds = first_token - started
        result.decode_seconds = finished - first_token
    return results
