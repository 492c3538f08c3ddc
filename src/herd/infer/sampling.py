"""Choosing the next token from a row of logits: greedy, temperature, top-k, top-p, min-p, penalties.

The logit processors run in the order Hugging Face ``generate`` applies them,
so a seeded herd run and a transformers run filter the same candidates:

1. repetition penalty (Keskar et al. 2019, CTRL §4.1): a logit of a token that
   already occurs in the prompt or the output is divided by the penalty when
   positive and multiplied by it when negative;
2. temperature: logits divided by ``temperature``; 0 means greedy (argmax);
3. top-k (Fan et al. 2018): only the ``k`` largest logits survive;
4. top-p, nucleus sampling (Holtzman et al. 2020): the smallest set of tokens
   whose probability adds up to at least ``p`` survives;
5. min-p (Nguyen et al. 2024): tokens whose probability is below
   ``min_p × max probability`` are dropped.

Each sequence of a batch draws from its own ``torch.Generator`` seeded with
``seed + index``, so sampling a prompt in a batch gives the same tokens as
sampling it alone with that seed. torch's CPU generator keeps only the low 32
bits of a seed (7 and 7 + 2**32 draw the same numbers), so a seed outside
``[0, 2**32)`` is first mixed into 32 bits (:func:`generator_seed`): callers
that give every round or sample its own wide seed, as rejection sampling does,
get distinct draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from herd.errors import ConfigError


class SamplingError(ConfigError):
    """A sampling parameter outside its valid range."""


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen; ``temperature == 0`` is greedy decoding."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _finite(self.temperature) or self.temperature < 0:
            raise SamplingError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)):
            raise SamplingError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if self.top_k is not None and self.top_k < 1:
            raise SamplingError(f"top_k must be an integer >= 1, got {self.top_k}")
        if self.top_p is not None and not (_finite(self.top_p) and 0 < self.top_p <= 1):
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not (_finite(self.min_p) and 0 <= self.min_p <= 1):
            raise SamplingError(f"min_p must be in [0, 1], got {self.min_p}")
        if not _finite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise SamplingError(
                f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise SamplingError(f"seed must be an integer, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        """Whether the choice is the argmax (temperature 0)."""
        return self.temperature == 0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty on the (batch, vocab) ``logits`` of tokens marked in the boolean ``seen``."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``logits`` with everything below the k-th largest value of each row set to -inf (ties survive)."""
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_mask(logits: torch.Tensor, p: float) -> torch.Tensor:
    """``logits`` outside each row's nucleus set to -inf.

    The nucleus is the smallest prefix of the tokens sorted by probability
    whose mass reaches ``p``; the most likely token always survives.
    """
    if p >= 1:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)


def min_p_mask(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """``logits`` of tokens less likely than ``min_p`` times the row's top probability set to -inf."""
    probs = logits.softmax(dim=-1)
    threshold = probs.amax(dim=-1, keepdim=True) * min_p
    return logits.masked_fill(probs < threshold, -math.inf)


def process_logits(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None) -> torch.Tensor:
    """The penalised, tempered and filtered fp32 logits that tokens are drawn from (steps 1–5 above)."""
    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits
    logits = logits / params.temperature
    if params.top_k is not None:
        logits = top_k_mask(logits, params.top_k)
    if params.top_p is not None:
        logits = top_p_mask(logits, params.top_p)
    if params.min_p is not None and params.min_p > 0:
        logits = min_p_mask(logits, params.min_p)
    return logits


_MASK64 = (1 << 64) - 1


def generator_seed(seed: int) -> int:
    """``seed`` if it is in ``[0, 2**32)``, else its splitmix64 hash cut to 32 bits: a seed torch's CPU generator keeps whole."""
    if 0 <= seed < 1 << 32:
        return seed
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & 0xFFFFFFFF


class Sampler:
    """Draws one token per row of a (batch, vocab) logits tensor, reproducibly when seeded.

    It also keeps the boolean ``seen`` table the repetition penalty needs,
    updated in place as tokens are produced.
    """

    def __init__(self, params: SamplingParams, batch: int, vocab_size: int, device: torch.device) -> None:
        self.params = params
        self.generators: list[torch.Generator] = []
        if not params.greedy:
            for i in range(batch):
                generator = torch.Generator(device=device)
                if params.seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(generator_seed(params.seed + i))
                self.generators.append(generator)
        self.seen: torch.Tensor | None = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device)

    def observe_prompts(self, prompts: list[list[int]]) -> None:
        """Mark each row's prompt tokens as seen by the repetition penalty."""
        if self.seen is not None:
            for row, ids in enumerate(prompts):
                self.seen[row, ids] = True

    def observe(self, tokens: torch.Tensor) -> None:
        """Mark the newly chosen ``tokens`` (batch,) as seen by the repetition penalty."""
        if self.seen is not None:
            self.seen.scatter_(1, tokens.unsqueeze(-1), True)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """The chosen token of each row, shape (batch,)."""
        processed = process_logits(logits, self.params, self.seen)
        if self.params.greedy:
            return processed.argmax(dim=-1)
        probs = processed.softmax(dim=-1)
        return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) of each row under the model's own distribution (before penalties and filters)."""
    logits = logits.float()
    chosen = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return chosen - logits.logsumexp(dim=-1)
