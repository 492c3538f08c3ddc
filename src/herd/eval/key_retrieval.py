"""Key retrieval: can the model find a pass key hidden at a chosen depth of a long, dull context?

Code Llama §3.3 checks its long-context fine-tuning with a synthetic key
retrieval task (the "pass key" of Mohtashami & Jaggi 2023); Llama 3 §5.2 runs
the same idea as "needle in a haystack". herd's version: a random 5-digit key
(``random.Random`` seeded by the spec's ``seed``, the cell and the trial)
stated once at ``depth`` (0 = right after the instructions, 1 = right before
the question) of filler made of repeated neutral sentences, then a question
that the model answers greedily through :func:`herd.infer.completion.generate`
(or :func:`herd.infer.chat_session.chat`, the whole prompt as one user turn).
An answer is right when the first number in it is the key.

The grid is ``lengths`` (prompt tokens, as the model's tokenizer counts them)
× ``depths`` × ``trials``. The filler is as many whole sentences as keep the
prompt within the length, so a prompt is at most one sentence short of it.
Lengths that do not fit the model's window with room for the answer are
capped to the window (repeated lengths are then merged). The headline metric
is the accuracy over all prompts with the Llama 3 95% CI; each example keeps
its length, depth, key and answer, and :func:`accuracy_grid` /
:func:`plot_key_retrieval` give the per-(length, depth) accuracy as a table
and as a heatmap (``key_retrieval.png``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from herd.errors import ConfigError
from herd.eval.batching import check_batch_size, map_longest_first
from herd.eval.result import Metric, TaskResult
from herd.infer.chat_session import chat as chat_replies
from herd.infer.completion import default_add_bos, generate
from herd.infer.engine import Engine
from herd.io.plot import pyplot, save_png
from herd.tokenizer import Tokenizer

KIND = "key_retrieval"
INSTRUCTIONS = (
    "Somewhere in the long text below there is a pass key, a number of five digits. "
    "The rest of the text does not matter. Find the pass key and remember it."
)
# Neutral filler, repeated in this order for as long as the prompt needs.
FILLER = (
    "The hills are quiet in the evening.",
    "A train passes the station every hour.",
    "Rain falls on the roofs of the town.",
    "The shop on the corner sells bread and milk.",
    "Clouds drift slowly over the fields.",
)
NEEDLE = "The pass key is {key}. Keep it in mind: {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
# Tokens kept free for the chat template's headers when prompts are sent as a user turn.
CHAT_ROOM = 64
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class KeyRetrievalSpec:
    """The grid of a key retrieval task: prompt ``lengths`` in tokens × needle ``depths`` in [0, 1] × ``trials``."""

    name: str
    kind: Literal["key_retrieval"] = "key_retrieval"
    lengths: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    trials: int = 2
    seed: int = 1234
    max_new_tokens: int = 8

    def __post_init__(self) -> None:
        """Refuse grids that cannot run: no lengths or depths, a depth outside [0, 1], counts below 1."""
        if not self.lengths or min(self.lengths) < 1:
            raise ConfigError(
                f"task {self.name!r}: lengths must be positive token counts, got {self.lengths}"
            )
        if not self.depths or not all(0.0 <= d <= 1.0 for d in self.depths):
            raise ConfigError(f"task {self.name!r}: depths must be fractions in [0, 1], got {self.depths}")
        if self.trials < 1:
            raise ConfigError(f"task {self.name!r}: trials must be >= 1, got {self.trials}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"task {self.name!r}: max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Probe:
    """One prompt of the grid: its cell, the key hidden in it, the text and its length in tokens."""

    id: str
    length: int
    depth: float
    trial: int
    key: int
    prompt: str
    tokens: int


def haystack(sentences: int, depth: float, key: int) -> str:
    """The prompt with ``sentences`` filler sentences, the key's statement after ``round(depth·sentences)`` of them."""
    filler = [FILLER[i % len(FILLER)] for i in range(sentences)]
    filler.insert(round(depth * sentences), NEEDLE.format(key=key))
    return INSTRUCTIONS + "\n\n" + " ".join(filler) + "\n\n" + QUESTION


def fit(tokenizer: Tokenizer, length: int, depth: float, key: int, task: str = "") -> tuple[str, int]:
    """The longest prompt of at most ``length`` tokens (with BOS when the model's prompts get one) and its count."""
    bos = default_add_bos(tokenizer)

    def count(sentences: int) -> int:
        return len(tokenizer.encode(haystack(sentences, depth, key), bos=bos))

    empty = count(0)
    if empty > length:
        raise ConfigError(
            f"task {task!r}: length {length} is shorter than the prompt without filler ({empty} tokens)"
        )
    probe = 4 * len(FILLER)
    per_sentence = max(1.0, (count(probe) - empty) / probe)
    sentences, tokens = 0, empty
    for _ in range(3):  # a few secant steps bring the count within a sentence or two
        sentences = max(0, sentences + round((length - tokens) / per_sentence))
        tokens = count(sentences)
    while tokens > length:
        sentences -= 1
        tokens = count(sentences)
    while (longer := count(sentences + 1)) <= length:
        sentences, tokens = sentences + 1, longer
    return haystack(sentences, depth, key), tokens


def usable_lengths(spec: KeyRetrievalSpec, context: int, chat: bool = False) -> list[int]:
    """``spec.lengths`` capped to what ``context`` holds with room for the answer (and the chat template)."""
    room = context - spec.max_new_tokens - (CHAT_ROOM if chat else 0)
    if room < 1:
        raise ConfigError(f"task {spec.name!r}: the model's context ({context}) leaves no room for a prompt")
    return list(dict.fromkeys(min(length, room) for length in spec.lengths))


def build_probes(
    spec: KeyRetrievalSpec, tokenizer: Tokenizer, context: int, chat: bool = False
) -> list[Probe]:
    """Every prompt of the grid, trial by trial (each trial covers every cell), so a ``limit`` spans the grid."""
    probes = []
    for trial in range(spec.trials):
        for length in usable_lengths(spec, context, chat):
            for depth in spec.depths:
                key = random.Random(f"{spec.seed}:{length}:{depth}:{trial}").randint(10_000, 99_999)
                prompt, tokens = fit(tokenizer, length, depth, key, spec.name)
                probe_id = f"{spec.name}/L{length}/d{depth:g}/t{trial}"
                probes.append(Probe(probe_id, length, depth, trial, key, prompt, tokens))
    return probes


def retrieved(answer: str, key: int) -> bool:
    """Whether the first number in ``answer`` is ``key`` (digits only: "12,345" is not 12345)."""
    found = _NUMBER.search(answer)
    return found is not None and found.group() == str(key)


def _answers(
    spec: KeyRetrievalSpec, engine: Engine, tokenizer: Tokenizer, prompts: list[str], chat: bool
) -> list[str]:
    """Greedy answers to ``prompts`` in one batch, as plain completions or replies to one user turn each."""
    if chat:
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        return chat_replies(
            engine, tokenizer, conversations, max_new_tokens=spec.max_new_tokens, temperature=0.0
        )
    completions = generate(
        engine, tokenizer, prompts, max_new_tokens=spec.max_new_tokens, temperature=0.0, stop=["\n"]
    )
    return [c.text for c in completions]


def evaluate_key_retrieval(
    spec: KeyRetrievalSpec,
    engine: Engine,
    tokenizer: Tokenizer,
    *,
    limit: int = 0,
    batch_size: int = 16,
    chat: bool = False,
    data_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> TaskResult:
    """Ask for the key of every prompt of the grid (the first ``limit`` when > 0) and score the answers.

    Prompts run longest first in batches of ``batch_size``; the records come
    back in grid order. ``data_dir`` is not used: the task's text is generated.
    """
    del data_dir
    check_batch_size(batch_size)
    probes = build_probes(spec, tokenizer, engine.context, chat)
    probes = probes[:limit] if limit > 0 else probes
    answers = map_longest_first(
        probes,
        lambda p: p.tokens,
        batch_size,
        lambda batch: _answers(spec, engine, tokenizer, [p.prompt for p in batch], chat),
        progress,
    )
    records = [
        {
            "id": p.id,
            "length": p.length,
            "tokens": p.tokens,
            "depth": p.depth,
            "trial": p.trial,
            "key": p.key,
            "answer": answer,
            "hit": retrieved(answer, p.key),
        }
        for p, answer in zip(probes, answers, strict=True)
    ]
    metrics = (Metric.proportion("accuracy", [r["hit"] for r in records]),)
    return TaskResult(spec.name, KIND, len(records), metrics, records)


def accuracy_grid(result: TaskResult) -> tuple[list[int], list[float], list[list[float | None]]]:
    """The lengths, the depths and the accuracy of each (depth, length) cell (rows: depths; None: no prompt)."""
    cells: dict[tuple[int, float], list[bool]] = {}
    for record in result.examples:
        cells.setdefault((record["length"], record["depth"]), []).append(record["hit"])
    lengths = sorted({length for length, _ in cells})
    depths = sorted({depth for _, depth in cells})
    grid = [[_mean(cells.get((length, depth))) for length in lengths] for depth in depths]
    return lengths, depths, grid


def _mean(hits: list[bool] | None) -> float | None:
    return None if hits is None else sum(hits) / len(hits)


def plot_key_retrieval(result: TaskResult, path: Path | str) -> Path:
    """A heatmap of the accuracy by prompt length (x) and key depth (y), each cell labelled; written as PNG."""
    lengths, depths, grid = accuracy_grid(result)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2.5, 0.6 * len(depths) + 2.0))
    values = [[float("nan") if v is None else v for v in row] for row in grid]
    image = ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", origin="upper")
    for row, line in enumerate(grid):
        for column, value in enumerate(line):
            label = "–" if value is None else f"{100 * value:.0f}%"
            ax.text(column, row, label, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(lengths)), [str(length) for length in lengths])
    ax.set_yticks(range(len(depths)), [f"{depth:g}" for depth in depths])
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("key depth (0 = start, 1 = end)")
    ax.set_title(
        f"{result.task}: pass key retrieval, accuracy {100 * result.primary.value:.0f}% (n={result.n})"
    )
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return save_png(fig, path)
