"""Code Llama infilling: generate the code that goes between a prefix and a suffix (Code Llama §2.3).

Code Llama 7B/13B/70B were trained to fill in the middle of a file. The prompt
is prefix-suffix-middle (PSM), ``<s>▁<PRE> {prefix}▁<SUF>{suffix}▁<MID>``, with
the four infilling tokens ``▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>`` (ids 32007–32010 of
the 32,016-token vocabulary); the model writes the middle and ends it with
``▁<EOT>``. The ids are laid out as Meta's reference ``infilling_prompt_tokens``
lays them out: the prefix encoded as ordinary text (with SentencePiece's leading
space), the suffix as text that continues the code (no leading space), see
:meth:`herd.tokenizer.sentencepiece_engine.SentencePieceTokenizer.encode_infill`.
The suffix-first (SPM) variant is not implemented.

The infilling tokens are looked up by their text among the tokenizer's special
tokens, so what a user types as prefix or suffix (even ``<PRE>``) stays plain
text. Generation is :func:`herd.infer.completion.complete_ids`, which stops at
the tokenizer's stop ids; a Code Llama tokenizer's include ``▁<EOT>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from herd.errors import HerdError
from herd.infer.completion import Completion, StreamCallback, complete_ids
from herd.infer.engine import Engine
from herd.infer.generate import check_max_new_tokens
from herd.infer.sampling import SamplingParams
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.sentencepiece_engine import INFILL_PIECES, SentencePieceTokenizer


def infill_prompt_ids(tokenizer: Tokenizer, prefix: str, suffix: str) -> list[int]:
    """The PSM prompt ``<s>▁<PRE> prefix ▁<SUF>suffix ▁<MID>`` as ids (Code Llama §2.3, Meta's layout).

    A tokenizer without Code Llama's four infilling tokens is a one-line
    :class:`HerdError` naming the tokenizer and the tokens it lacks.
    """
    specials = tokenizer.special_tokens
    missing = [piece for piece in INFILL_PIECES if piece not in specials]
    if missing:
        raise HerdError(
            f"tokenizer {tokenizer.source} has no infilling token(s) {' '.join(missing)}: "
            "infilling needs a Code Llama tokenizer (Code Llama §2.3)"
        )
    if not isinstance(tokenizer, SentencePieceTokenizer):
        raise HerdError(
            f"tokenizer {tokenizer.source}: infilling needs a SentencePiece tokenizer (Code Llama's), "
            f"not a {type(tokenizer).__name__}"
        )
    return tokenizer.encode_infill(prefix, suffix)


def infill(
    engine: Engine,
    tokenizer: Tokenizer,
    prefix: str,
    suffix: str,
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    stream: StreamCallback | None = None,
) -> Completion:
    """The middle between ``prefix`` and ``suffix``, generated until ``▁<EOT>`` (or a ``stop`` string, or the length).

    Sampling is as in :func:`herd.infer.completion.generate` (default: greedy).
    ``text`` is the middle without the ``▁<EOT>`` that ended it; ``token_ids``
    end with it when it did.
    """
    check_max_new_tokens(max_new_tokens)
    ids = infill_prompt_ids(tokenizer, prefix, suffix)
    sampling = SamplingParams(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    return complete_ids(engine, tokenizer, [ids], max_new_tokens, sampling, stop, stream=stream)[0]
