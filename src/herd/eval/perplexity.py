"""Perplexity and bits per byte of whole documents, scored as lm-evaluation-harness scores its ``wikitext`` task.

The Llama papers report language modelling quality as perplexity on held-out
text (Llama 1 §3, the validation perplexity of its training curves; Llama 3
§3.2.1 predicts downstream accuracy from the NLL of held-out answers).
Tokenizers differ, so a per-token figure does not compare across models;
lm-evaluation-harness's ``loglikelihood_rolling`` tasks (``wikitext``) report
the summed negative log-likelihood of each document per UTF-8 byte and per
word instead. This module reproduces them:

- ``bits_per_byte`` (the headline): ``−Σ log p / (Σ bytes · ln 2)``;
- ``byte_perplexity``: ``exp(−Σ log p / Σ bytes)``;
- ``word_perplexity``: ``exp(−Σ log p / Σ words)``, a document's words being
  lm-eval's count ``len(re.split(r"\\s+", text))``.

Sums run over all documents first, as lm-eval's weighted aggregation does.

**Windows.** A document is tokenized whole (with BOS when the tokenizer starts
documents with it, as lm-eval's HF model does by default) and every one of its
tokens is scored exactly once, in windows of at most the model's context
``L``: the first window predicts the first ``L`` tokens after the prefix token
(BOS, else EOS: lm-eval's ``prefix_token_id``), and each later window predicts
the next ``stride`` tokens from a full window of ``L`` input tokens, so it
re-reads the ``L − stride`` tokens the previous window already read. This is
the sliding-window method of the Hugging Face perplexity guide; ``stride = 0``
(the default) means ``stride = L``, lm-eval's disjoint windows
(``get_rolling_token_windows`` with ``context_len=1`` and
``make_disjoint_window``). A smaller stride gives each prediction more
context, hence a lower perplexity, for ``L / stride`` times the compute. When
the tokenizer adds BOS the first scored token is that BOS after the prefix
BOS, exactly as in lm-eval. Every window is one (context, continuation) request
of :func:`herd.eval.loglikelihood.score_requests`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from herd.errors import ConfigError, HerdError, InputError
from herd.eval.datasets import OLMO_PREFIX, read_rows, resolve
from herd.eval.loglikelihood import BATCH_SIZE, score_requests
from herd.eval.result import Metric, TaskResult
from herd.eval.tasks import field_value
from herd.infer.completion import default_add_bos
from herd.infer.engine import Engine
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer

KIND = "perplexity"
# Logits (window positions × vocabulary) scored per forward at most, whatever batch_size asks: a window of
# a long context is thousands of positions of 50k-128k logits each.
LOGITS_PER_FORWARD = 2**28


@dataclass(frozen=True)
class PerplexitySpec:
    """A perplexity task: the documents at ``path`` (a ``.txt`` file is one document; a ``.jsonl``,
    ``.parquet`` or saved Hugging Face folder holds one per row, its text in ``field``) and the window
    ``stride`` (0: lm-eval's disjoint windows)."""

    name: str
    path: str
    kind: Literal["perplexity"] = "perplexity"
    field: str = "text"
    stride: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or self.stride < 0:
            raise ConfigError(
                f"task {self.name!r}: stride must be >= 0 (0: disjoint windows), got {self.stride}"
            )
        if not self.field:
            raise ConfigError(f"task {self.name!r}: field must name the text field of each row")


def rolling_windows(
    tokens: Sequence[int], prefix: int, max_len: int, stride: int = 0
) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) windows that score every token of ``tokens`` once (see the module docstring).

    The context plus the continuation of a window is at most ``max_len + 1``
    tokens, the model's input being all of them but the last.
    """
    if max_len < 1:
        raise HerdError(f"the window must hold at least one token, got {max_len}")
    if not 0 <= stride <= max_len:
        raise ConfigError(f"stride must be between 0 and the model's context {max_len}, got {stride}")
    step = stride or max_len
    tokens = list(tokens)
    if not tokens:
        return []
    first = min(max_len, len(tokens))
    windows = [([prefix], tokens[:first])]
    start = first
    while start < len(tokens):
        end = min(start + step, len(tokens))
        windows.append((tokens[end - max_len - 1 : start], tokens[start:end]))
        start = end
    return windows


def rolling_loglikelihood(
    engine: Engine | Transformer,
    tokenizer: Tokenizer,
    text: str,
    *,
    stride: int = 0,
    batch_size: int = BATCH_SIZE,
) -> tuple[float, int]:
    """The summed log-probability of every token of ``text`` and how many tokens that is.

    lm-eval's ``loglikelihood_rolling`` of one document when ``stride`` is 0;
    ``batch_size`` windows are scored per forward, fewer when long windows of a
    large vocabulary would not fit :data:`LOGITS_PER_FORWARD`.
    """
    engine = engine if isinstance(engine, Engine) else Engine(engine)
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if prefix is None:
        raise HerdError(f"{tokenizer.source}: the first token needs a BOS or EOS token to condition on")
    tokens = tokenizer.encode(text, bos=default_add_bos(tokenizer))
    windows = rolling_windows(tokens, prefix, engine.context, stride)
    if not windows:
        return 0.0, 0
    longest = max(len(continuation) for _, continuation in windows)
    rows = max(1, min(batch_size, LOGITS_PER_FORWARD // (longest * engine.vocab_size)))
    scored = score_requests(engine, windows, batch_size=rows)
    return sum(s.logprob for s in scored), sum(s.tokens for s in scored)


def count_words(text: str) -> int:
    """Words of ``text`` as lm-eval counts them for ``word_perplexity``: the pieces between whitespace runs."""
    return len(re.split(r"\s+", text))


def perplexity_metrics(logprob: float, n_bytes: int, n_words: int) -> tuple[Metric, Metric, Metric]:
    """``bits_per_byte``, ``byte_perplexity`` and ``word_perplexity`` of a summed log-probability."""
    if n_bytes < 1 or n_words < 1:
        raise HerdError(f"perplexity needs text: got {n_bytes} bytes and {n_words} words")
    return (
        Metric("bits_per_byte", -logprob / (n_bytes * math.log(2))),
        Metric("byte_perplexity", math.exp(-logprob / n_bytes)),
        Metric("word_perplexity", math.exp(-logprob / n_words)),
    )


def read_documents(spec: PerplexitySpec, data_dir: Path | None = None) -> list[str]:
    """The documents of ``spec``; a relative ``path`` is looked for under ``data_dir`` first when given."""
    location = resolve(spec.path)
    if data_dir is not None and not spec.path.startswith(OLMO_PREFIX) and not location.is_absolute():
        under = data_dir / location
        location = under if under.exists() else location
    if location.suffix == ".txt":
        try:
            return [location.read_bytes().decode("utf-8")]
        except FileNotFoundError:
            raise InputError(f"{location}: no such text file (task {spec.name!r})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{location}: not UTF-8 text (byte {exc.start})") from None
    documents = []
    for index, row in enumerate(read_rows(location)):
        where = f"{location} row {index}"
        text = field_value(row, spec.field, where)
        if not isinstance(text, str):
            raise InputError(f"{where}: field {spec.field!r} is not text ({type(text).__name__})")
        documents.append(text)
    return documents


def evaluate_perplexity(
    spec: PerplexitySpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = BATCH_SIZE,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Score the first ``limit`` documents of ``spec`` (all when 0): the task's three metrics and one
    record per document (its log-probability, tokens, bytes, words and bits per byte)."""
    if chat:
        raise ConfigError(
            f"task {spec.name!r}: perplexity scores raw text, which has no chat form (leave out --chat)"
        )
    documents = read_documents(spec, data_dir)
    if limit > 0:
        documents = documents[:limit]
    if not documents:
        raise InputError(f"{spec.path}: no documents for task {spec.name!r}")
    examples = []
    for index, text in enumerate(documents):
        logprob, tokens = rolling_loglikelihood(
            engine, tokenizer, text, stride=spec.stride, batch_size=batch_size
        )
        n_bytes = len(text.encode("utf-8"))
        examples.append(
            {
                "id": f"{spec.name}/{index}",
                "logprob": logprob,
                "tokens": tokens,
                "bytes": n_bytes,
                "words": count_words(text),
                "bits_per_byte": -logprob / (n_bytes * math.log(2)) if n_bytes else None,
            }
        )
        if progress is not None:
            progress(1)
    return TaskResult(
        task=spec.name,
        kind=KIND,
        n=len(documents),
        metrics=perplexity_metrics(
            sum(e["logprob"] for e in examples),
            sum(e["bytes"] for e in examples),
            sum(e["words"] for e in examples),
        ),
        examples=examples,
    )
