"""Log-likelihood of continuations, as lm-evaluation-harness's HF backend computes it, with each context run once.

For every (context, continuation) request the scorer returns the summed
log-probability of the continuation's tokens given the context, and lm-eval's
``is_greedy``: whether greedy decoding would have produced exactly those tokens.

**Tokenisation** is lm-eval's ``_encode_pair``: trailing spaces of the context
move onto the continuation, then ``context + continuation`` is encoded whole
and the continuation is what follows the context's own encoding
(``whole[len(encode(context)):]``), so a merge across the boundary is scored
as the model would see the text. BOS is prepended when the model's tokenizer
starts documents with it (lm-eval's default, ``add_bos_token=None``: what the
tokenizer does); an empty context becomes the prefix token alone (BOS, else
EOS). A request longer than the window keeps, as lm-eval does, the last
``max_seq_len + 1`` tokens of context + continuation (the input is those minus
the last one).

**Speed.** lm-eval's HF backend runs the whole context again for every choice
of a question. Here requests with the same (truncated) context are grouped:
the context is prefilled once into the engine's KV cache
(:meth:`herd.infer.engine.Engine.prefill` with ``copies`` = the number of
choices), then one forward runs the right-padded continuations of all choices
against the copied cache. Questions with the same number of choices share a
left-padded batch, sorted by length so padding stays small.

**Padding invariance** (a known harness complaint: scores moving with batch
size): padding columns are masked out of attention and RoPE positions start at
each row's first real token, so the result does not depend on the batch; the
tests hold batch 1 and 16 to 1e-5. Right padding of the continuations is
invisible to the real tokens by causality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import torch

from herd.errors import HerdError
from herd.infer.completion import default_add_bos
from herd.infer.engine import Engine, PaddedBatch
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer

# Continuations (rows) scored per forward by default; a question's choices are never split.
BATCH_SIZE = 16


@dataclass(frozen=True)
class Scored:
    """One continuation's score: summed log-probability, lm-eval's ``is_greedy``, and its token count."""

    logprob: float
    is_greedy: bool
    tokens: int


Request = tuple[Sequence[int], Sequence[int]]


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str, *, bos: bool
) -> tuple[list[int], list[int]]:
    """Context and continuation ids as lm-eval's ``_encode_pair`` splits them (see the module docstring)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer.encode(context + continuation, bos=bos)
    context_ids = tokenizer.encode(context, bos=bos)
    continuation_ids = whole[len(context_ids) :]
    if not context_ids:  # lm-eval scores an empty context against its prefix token
        prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if prefix is None:
            raise HerdError("an empty context needs a BOS or EOS token to condition on")
        context_ids = [prefix]
    if not continuation_ids:
        raise HerdError(f"continuation {continuation!r} after {context[-40:]!r} encodes to no tokens")
    return context_ids, continuation_ids


def score_requests(
    model: Transformer | Engine, requests: Sequence[Request], *, batch_size: int = BATCH_SIZE
) -> list[Scored]:
    """:class:`Scored` of each (context ids, continuation ids) request, in the order given.

    ``batch_size`` bounds the continuations scored per forward; the choices of
    one context always go together, so a larger group makes a larger batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise HerdError(f"batch_size must be a positive integer, got {batch_size!r}")
    engine = model if isinstance(model, Engine) else Engine(model)
    window = engine.context
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (context, continuation) in enumerate(requests):
        if not context or not continuation:
            raise HerdError(f"request {i}: the context and the continuation need at least one token each")
        if min(*context, *continuation) < 0 or max(*context, *continuation) >= engine.vocab_size:
            raise HerdError(
                f"request {i}: a token id is outside the model's vocabulary [0, {engine.vocab_size})"
            )
        if len(continuation) > window:
            raise HerdError(
                f"request {i}: the continuation has {len(continuation)} tokens, over the window {window}"
            )
        kept = (list(context) + list(continuation))[-(window + 1) :]
        groups.setdefault(tuple(kept[: -len(continuation)]), []).append(i)
    # Same number of choices together (one ``copies`` per prefill), longest first within each.
    order = sorted(
        groups.items(),
        key=lambda g: (len(g[1]), -len(g[0]) - max(len(requests[i][1]) for i in g[1])),
    )
    results: list[Scored | None] = [None] * len(requests)
    with torch.inference_mode():
        for copies, same_copies in groupby(order, key=lambda g: len(g[1])):
            questions = list(same_copies)
            per_batch = max(1, batch_size // copies)
            for start in range(0, len(questions), per_batch):
                chunk = questions[start : start + per_batch]
                contexts = [list(c) for c, _ in chunk]
                rows = [i for _, indices in chunk for i in indices]
                scored = _score_batch(engine, contexts, [requests[i][1] for i in rows], copies)
                for i, s in zip(rows, scored, strict=True):
                    results[i] = s
    return [s for s in results if s is not None]


def _score_batch(
    engine: Engine, contexts: list[list[int]], continuations: list[Sequence[int]], copies: int
) -> list[Scored]:
    """Prefill ``contexts`` once, ``copies`` rows each, then score row ``r``'s continuation in one forward."""
    longest = max(len(c) for c in continuations)
    batch = PaddedBatch(contexts, pad_id=contexts[0][0], device=engine.device)
    first = engine.prefill(batch, longest, copies=copies)  # predicts each continuation's first token
    batch = batch.repeat_rows(copies)
    targets = torch.tensor(
        [list(c) + [c[0]] * (longest - len(c)) for c in continuations], dtype=torch.long, device=engine.device
    )
    logits = first.unsqueeze(1)
    if longest > 1:
        width = batch.width
        hidden = engine.model.hidden_states(
            targets[:, :-1],
            start_pos=width,
            cache=engine.cache,
            positions=batch.positions(width, width + longest - 1),
            key_mask=batch.key_mask,
        )
        logits = torch.cat([logits, engine.model.output(hidden)], dim=1)
    logits = logits.float()  # log-probabilities in fp32 whatever the model's dtype
    # log_softmax at the targets alone: no second (rows, tokens, vocab) tensor.
    token_logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(dim=-1)
    greedy = logits.argmax(dim=-1) == targets
    valid = torch.arange(longest, device=engine.device) < torch.tensor(
        [len(c) for c in continuations], device=engine.device
    ).unsqueeze(1)
    sums = (token_logprobs * valid).sum(dim=1).tolist()
    all_greedy = (greedy | ~valid).all(dim=1).tolist()
    return [
        Scored(logprob=s, is_greedy=g, tokens=len(c))
        for s, g, c in zip(sums, all_greedy, continuations, strict=True)
    ]


def score_texts(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = BATCH_SIZE,
    add_bos: bool | None = None,
) -> list[Scored]:
    """:class:`Scored` of each (context, continuation) text pair, tokenised as lm-eval does.

    ``add_bos`` None: BOS when the tokenizer starts documents with it (see
    :func:`herd.infer.completion.default_add_bos`).
    """
    bos = default_add_bos(tokenizer) if add_bos is None else add_bos
    requests = [encode_pair(tokenizer, context, continuation, bos=bos) for context, continuation in pairs]
    return score_requests(model, requests, batch_size=batch_size)
