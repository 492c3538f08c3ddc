"""Text in, text out: ``herd.generate(model, tokenizer, prompts, ...) -> list[Completion]``.

This layer encodes the prompts, runs :func:`herd.infer.generate.generate_ids`,
turns the new ids back into text as they arrive (streaming, stop strings) and
packages each result as a :class:`Completion`.

``text`` is the continuation exactly as it follows the prompt (a leading space
is kept), without the stop token or stop string that ended it; ``token_ids``
are the generated ids only, ending with the stop id when one ended the
generation (as ``transformers.generate`` returns them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from herd.errors import HerdError
from herd.infer.detokenize import TextStream
from herd.infer.engine import Engine
from herd.infer.generate import FinishReason, check_max_new_tokens, generate_ids
from herd.infer.sampling import SamplingParams
from herd.model.transformer import Transformer
from herd.tokenizer.base import Tokenizer, check_vocab_fits

# BOS tokens that open a document (Llama 1/2 SentencePiece, Llama 3 tiktoken); a tokenizer whose BOS is
# something else (SmolLM2's ``<|im_start|>``) was not trained with a BOS in front of plain text.
DOCUMENT_BOS = ("<s>", "<|begin_of_text|>")
# Called with (prompt index, new text) as text becomes certain.
StreamCallback = Callable[[int, str], None]


@dataclass
class Completion:
    """One prompt's generated continuation."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    truncated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict of every field."""
        return dataclasses.asdict(self)


def default_add_bos(tokenizer: Tokenizer) -> bool:
    """Whether plain-text prompts start with BOS: yes when the tokenizer's BOS is a document start."""
    return tokenizer.bos_id is not None and tokenizer.id_to_piece(tokenizer.bos_id) in DOCUMENT_BOS


def truncate_left(ids: list[int], context: int, max_new_tokens: int) -> list[int]:
    """The last tokens of ``ids`` that leave room for the answer (at most half the context is reserved)."""
    keep = context - min(max_new_tokens, context // 2)
    return ids[-keep:] if len(ids) > keep else ids


def encode_prompts(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    add_bos: bool | None,
    context: int,
    max_new_tokens: int,
    truncate: Literal["left"] | None,
) -> tuple[list[list[int]], list[int]]:
    """Ids of each prompt (truncated from the left if asked) and how many tokens were dropped from each."""
    if truncate not in (None, "left"):
        raise HerdError(f"truncate must be None or 'left', got {truncate!r}")
    bos = default_add_bos(tokenizer) if add_bos is None else add_bos
    encoded: list[list[int]] = []
    dropped: list[int] = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise HerdError(f"prompt {i}: expected a string, got {type(prompt).__name__}")
        if not prompt:
            raise HerdError(f"prompt {i} is empty")
        ids = tokenizer.encode(prompt, bos=bos)
        kept = truncate_left(ids, context, max_new_tokens) if truncate == "left" else ids
        encoded.append(kept)
        dropped.append(len(ids) - len(kept))
    return encoded, dropped


def generate(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    prompts: str | Sequence[str],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    ignore_eos: bool = False,
    *,
    add_bos: bool | None = None,
    truncate: Literal["left"] | None = None,
    stream: StreamCallback | None = None,
) -> list[Completion]:
    """Generate a continuation of each prompt (all prompts in one batch).

    ``temperature`` 0 is greedy decoding; otherwise tokens are sampled after
    top-k/top-p/min-p filtering (see :mod:`herd.infer.sampling`), prompt ``i``
    with seed ``seed + i``. Generation of a prompt ends at an end-of-turn/EOS
    token (unless ``ignore_eos``), at any of the ``stop`` strings, after
    ``max_new_tokens``, or when the context window is full. ``add_bos`` None
    adds BOS when the tokenizer's BOS is a document start (Llama 1/2/3).
    ``truncate="left"`` drops the oldest prompt tokens instead of failing when
    the prompt does not fit. ``stream(i, text)`` receives text as it is generated.
    Pass an :class:`Engine` instead of the model to reuse its cache and compiled step.
    """
    engine = model if isinstance(model, Engine) else Engine(model)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    sampling = SamplingParams(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    check_max_new_tokens(max_new_tokens)
    ids, dropped = encode_prompts(
        tokenizer,
        texts,
        add_bos=add_bos,
        context=engine.context,
        max_new_tokens=max_new_tokens,
        truncate=truncate,
    )
    return complete_ids(engine, tokenizer, ids, max_new_tokens, sampling, stops, ignore_eos, stream, dropped)


def complete_ids(
    engine: Engine,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: SamplingParams,
    stop: Sequence[str] = (),
    ignore_eos: bool = False,
    stream: StreamCallback | None = None,
    truncated: Sequence[int] | None = None,
) -> list[Completion]:
    """:func:`generate` for prompts that are already token ids (e.g. a rendered chat)."""
    check_vocab_fits(tokenizer, engine.vocab_size)
    streams = [TextStream(tokenizer, p, stop) for p in prompts]

    def on_token(row: int, token: int, logprob: float) -> bool:
        delta = streams[row].push(token)
        if delta and stream is not None:
            stream(row, delta)
        return streams[row].stopped

    results = generate_ids(
        engine,
        prompts,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        stop_ids=() if ignore_eos else tokenizer.stop_ids,
        on_token=on_token,
        vocab_limit=tokenizer.vocab_size,
    )
    completions = []
    for row, result in enumerate(results):
        tail = streams[row].finish()
        if tail and stream is not None:
            stream(row, tail)
        completions.append(
            Completion(
                text=streams[row].text,
                token_ids=result.token_ids,
                finish_reason=result.finish_reason,
                logprobs=result.logprobs,
                prompt_tokens=len(prompts[row]),
                truncated_tokens=truncated[row] if truncated else 0,
                prefill_seconds=result.prefill_seconds,
                decode_seconds=result.decode_seconds,
            )
        )
    return completions
