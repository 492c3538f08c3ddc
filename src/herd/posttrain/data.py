"""Post-training data: conversations and preference pairs, read, checked, rendered and packed in one place.

Every post-training stage reads the same two kinds of rows, from JSON Lines
(plain or compressed, :mod:`herd.io.compression`) or Parquet files with the
same columns (``messages`` as a list of ``{role, content}`` structs):

* conversations, for supervised fine-tuning (Llama 2 §3.1, Llama 3 §4.1.3)::

      {"messages": [{"role": "system"|"user"|"assistant", "content": str, "weight"?: 0|1}, ...], "system"?: str}

  An assistant message with ``"weight": 0`` is context only: the loss skips it
  (OpenAI's chat fine-tuning convention; Ghost Attention's earlier turns,
  Llama 2 §3.3). A weight elsewhere or other than 0 or 1 skips the row, and so
  does a conversation whose every answer has weight 0 ("nothing to train").

* preferences, for reward models (Llama 2 §3.2.2), DPO (Llama 3 §4.1.4) and
  the prompts of rejection sampling and PPO: a pair ::

      {"prompt": str | "messages": [...], "chosen": str, "rejected": str,
       "rating"?: "significantly_better"|"better"|"slightly_better"|"negligibly_better", "safety"?: bool}

  or a ranking, best first (Llama 3 §4.2.1: edited > chosen > rejected) ::

      {"prompt": str | "messages": [...], "responses": [best, ..., worst]}

* prompts alone, for rejection sampling and PPO (Llama 2 §3.2.3): any row with
  ``prompt`` or ``messages`` ending on a user turn (other keys are ignored, so a
  preference file serves too).

A row that cannot be used is skipped, never fatal: it is counted by reason
in a :class:`SkipCounts`, logged (at debug level) with its file and line, and
each file's counts are logged once as a warning. A file with no
usable row at all is an :class:`~herd.errors.InputError` that names the file
and the reasons. Rows too long for the context are found when they are
rendered (:func:`render_conversations`, :func:`render_pairs`) or packed
(:func:`pack`), and counted the same way.

Rendering goes through :mod:`herd.tokenizer.chat`, so user text never becomes
a special token and the loss mask is 1 exactly on assistant content and the
token that ends each assistant turn. :func:`pack` concatenates rendered
conversations into fixed-length training sequences with per-position document
ids, so attention stays inside each conversation (the model's document
masking, Llama 3 §3.2) and a packed example computes what it would alone.
:class:`EpochStream` is the order in which training draws them, epoch by
epoch, with its position saved for an exact resume.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from herd.errors import ConfigError, InputError
from herd.io.compression import DamagedFileError, open_read
from herd.model.cross_entropy import IGNORE_INDEX
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.chat import ChatError, ChatFormat, check_conversation, is_trained, is_weight

log = logging.getLogger("herd.posttrain")

ROLES = ("system", "user", "assistant")
#: Llama 2's four preference strengths (Llama 2 §3.2.1), strongest first; "unsure" counts as the last.
RATINGS = ("significantly_better", "better", "slightly_better", "negligibly_better")
_RATING_SYNONYMS = {"unsure": "negligibly_better"}

Message = dict[str, Any]  # role and content strings; on the assistant's, an optional int weight
Record = TypeVar("Record")
Rendered = TypeVar("Rendered")


class SkipCounts(Counter[str]):
    """Rows skipped, counted by reason; ``str()`` gives ``"12 skipped (8 'chosen' missing, 4 invalid JSON)"``."""

    def __str__(self) -> str:
        reasons = sorted(self.items(), key=lambda item: (-item[1], item[0]))
        return f"{self.total()} skipped ({', '.join(f'{n} {reason}' for reason, n in reasons)})"


class SkippedRow(InputError):
    """A row (or rendered example) that is left out; ``reason`` is its :class:`SkipCounts` key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Conversation:
    """A chat to fine-tune on: an optional system message, then user/assistant turns ending on the assistant."""

    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Prompt:
    """A conversation waiting for the assistant's answer: an optional system message, then turns ending on the user.

    ``safety`` marks prompts of the safety set: PPO scores their answers with
    the safety reward model (Llama 2 §3.2.3).
    """

    messages: tuple[Message, ...]
    safety: bool = False


@dataclass(frozen=True)
class Preference:
    """One comparison: ``chosen`` was preferred to ``rejected`` as the assistant's answer to ``prompt``.

    ``prompt`` ends on a user message; ``rating`` is one of :data:`RATINGS` or
    ``None``; ``safety`` marks pairs from the safety annotation (Llama 2 §3.2.1).
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    rating: str | None = None
    safety: bool | None = None


@dataclass(frozen=True)
class PreferenceGroup:
    """The responses to one prompt, best first: a pair row has two, a ranked row two or more.

    A reward-model batch scores each response once and compares the scores of
    every :attr:`pairs` entry; DPO trains on :meth:`preferences`.
    """

    prompt: tuple[Message, ...]
    responses: tuple[str, ...]
    rating: str | None = None
    safety: bool | None = None

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Every ordered pair ``(better, worse)`` of indices into :attr:`responses`."""
        n = len(self.responses)
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    def preferences(self) -> list[Preference]:
        """The group as :class:`Preference` pairs, one per entry of :attr:`pairs`."""
        return [
            Preference(self.prompt, self.responses[i], self.responses[j], self.rating, self.safety)
            for i, j in self.pairs
        ]


# --- reading -------------------------------------------------------------------------------------


def read_conversations(path: str | Path, skipped: SkipCounts | None = None) -> Iterator[Conversation]:
    """The usable conversations of a JSONL or Parquet file; bad rows are added to ``skipped`` by reason.

    Raises :class:`InputError` naming the file if it has no usable row.
    """
    return _read(Path(path), _conversation, skipped)


def read_preferences(path: str | Path, skipped: SkipCounts | None = None) -> Iterator[PreferenceGroup]:
    """The usable preference rows (pairs and rankings) of a JSONL or Parquet file; see :func:`read_conversations`."""
    return _read(Path(path), _preference_group, skipped)


def read_prompts(path: str | Path, skipped: SkipCounts | None = None) -> Iterator[Prompt]:
    """The usable prompts of a JSONL or Parquet file (``prompt`` or ``messages``); see :func:`read_conversations`."""
    return _read(Path(path), lambda row: Prompt(_prompt(row), bool(_safety(row))), skipped)


def normalise_rating(value: object) -> str | None:
    """``"Significantly better"`` → ``"significantly_better"``; ``None`` stays ``None``; others are skipped."""
    if value is None:
        return None
    if isinstance(value, str):
        key = "_".join(value.lower().replace("-", " ").split())
        key = _RATING_SYNONYMS.get(key, key)
        if key in RATINGS:
            return key
    raise SkippedRow("unknown rating", repr(value))


def _read(
    path: Path, parse: Callable[[dict[str, Any]], Record], skipped: SkipCounts | None
) -> Iterator[Record]:
    """Parse every row of ``path``, counting the bad ones in this file's and the caller's counts."""
    here = SkipCounts()
    used = 0
    for line, raw in _rows(path):
        try:
            record = parse(_object(raw))
        except SkippedRow as exc:
            here[exc.reason] += 1
            if skipped is not None:
                skipped[exc.reason] += 1
            log.debug("%s:%d: skipped: %s", path, line, exc)
            continue
        used += 1
        yield record
    if not used:
        raise InputError(f"{path}: no usable rows: {here}" if here else f"{path}: no rows (empty file)")
    if here:
        log.warning("%s: %d rows read, %s", path, used, here)


def _rows(path: Path) -> Iterator[tuple[int, object]]:
    """``(line or row number, row)`` of a file: Parquet rows as dicts, JSONL lines as bytes or a damage marker."""
    with open(path, "rb") as f:
        parquet = f.read(4) == b"PAR1"
    yield from (_parquet_rows(path) if parquet else _jsonl_lines(path))


def _jsonl_lines(path: Path) -> Iterator[tuple[int, object]]:
    number = 0
    try:
        with open_read(path) as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield number, line
    except DamagedFileError as exc:
        yield number + 1, SkippedRow(exc.reason.replace("_", " "), exc.detail)


def _parquet_rows(path: Path) -> Iterator[tuple[int, object]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install 'herd[data]')") from None
    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches():
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet file after row {number} ({exc})") from None


def _object(raw: object) -> dict[str, Any]:
    """A row as a dict: JSONL bytes are decoded; anything else than a JSON object is skipped."""
    if isinstance(raw, SkippedRow):
        raise raw
    if isinstance(raw, bytes):
        try:
            raw = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise SkippedRow("invalid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise SkippedRow("invalid JSON", exc.msg) from None
    if not isinstance(raw, dict):
        raise SkippedRow("not an object", type(raw).__name__)
    return raw


def _string(value: object, name: str) -> str:
    """``value`` if it is a string with some non-space text; ``None`` counts as missing."""
    if value is None:
        raise SkippedRow(f"{name} missing")
    if not isinstance(value, str):
        raise SkippedRow(f"{name} not a string", type(value).__name__)
    if not value.strip():
        raise SkippedRow(f"{name} empty")
    return value


def _messages(row: Mapping[str, Any]) -> tuple[Message, ...]:
    """The row's ``messages`` (plus its ``system`` prompt, if any), each with a known role and some content."""
    value = row.get("messages")
    if value is None:
        raise SkippedRow("'messages' missing")
    if not isinstance(value, list) or not value:
        raise SkippedRow("'messages' not a non-empty list")
    messages: list[Message] = []
    for message in value:
        if not isinstance(message, Mapping):
            raise SkippedRow("message not an object")
        if message.get("role") not in ROLES:
            raise SkippedRow("unknown role", repr(message.get("role")))
        messages.append({"role": message["role"], "content": _string(message.get("content"), "'content'")})
        weight = message.get("weight")
        if weight is not None:
            if message["role"] != "assistant":
                raise SkippedRow("'weight' not on an assistant message", message["role"])
            if not is_weight(weight):
                raise SkippedRow("'weight' not 0 or 1", repr(weight))
            messages[-1]["weight"] = weight
    return _with_system(row, messages)


def _with_system(row: Mapping[str, Any], messages: list[Message]) -> tuple[Message, ...]:
    if row.get("system") is None:
        return tuple(messages)
    if messages[0]["role"] == "system":
        raise SkippedRow("system prompt given twice")
    return ({"role": "system", "content": _string(row["system"], "'system'")}, *messages)


def _check_turns(messages: Sequence[Message], last: str) -> None:
    """Skip unless ``messages`` end on a ``last`` turn and alternate as every chat format needs."""
    if messages[-1]["role"] != last:
        raise SkippedRow(f"last message not from the {last}")
    try:
        check_conversation(messages, prompt=last == "user")
    except ChatError as exc:
        raise SkippedRow("turns out of order", str(exc)) from None


def _conversation(row: dict[str, Any]) -> Conversation:
    messages = _messages(row)
    _check_turns(messages, "assistant")
    if not any(is_trained(message) for message in messages):
        raise SkippedRow("nothing to train", "every assistant message has weight 0")
    return Conversation(messages)


def _prompt(row: Mapping[str, Any]) -> tuple[Message, ...]:
    """The prompt of a preference row: ``prompt`` (one user message) or ``messages`` ending on the user."""
    if row.get("prompt") is not None and row.get("messages") is not None:
        raise SkippedRow("both 'prompt' and 'messages'")
    if row.get("prompt") is not None:
        messages = _with_system(row, [{"role": "user", "content": _string(row["prompt"], "'prompt'")}])
    elif row.get("messages") is not None:
        messages = _messages(row)
    else:
        raise SkippedRow("'prompt' missing")
    _check_turns(messages, "user")
    return messages


def _preference_group(row: dict[str, Any]) -> PreferenceGroup:
    rating = None
    if row.get("responses") is None:
        responses = (_string(row.get("chosen"), "'chosen'"), _string(row.get("rejected"), "'rejected'"))
        if responses[0].strip() == responses[1].strip():
            raise SkippedRow("chosen equals rejected")
        rating = normalise_rating(row.get("rating"))
    else:
        if row.get("chosen") is not None or row.get("rejected") is not None:
            raise SkippedRow("both 'responses' and 'chosen'/'rejected'")
        if row.get("rating") is not None:
            raise SkippedRow("'rating' on a ranked row")
        value = row["responses"]
        if not isinstance(value, list) or len(value) < 2:
            raise SkippedRow("'responses' not a list of two or more")
        responses = tuple(_string(response, "'responses' item") for response in value)
        if len({response.strip() for response in responses}) < len(responses):
            raise SkippedRow("repeated response")
    return PreferenceGroup(_prompt(row), responses, rating, _safety(row))


def _safety(row: Mapping[str, Any]) -> bool | None:
    """A row's optional ``safety`` tag (Llama 2 §3.2.1's safety annotation)."""
    safety = row.get("safety")
    if safety is not None and not isinstance(safety, bool):
        raise SkippedRow("'safety' not a boolean", repr(safety))
    return safety


# --- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A rendered conversation: ids and a same-length loss mask (1 on assistant content and turn ends)."""

    ids: list[int]
    loss_mask: list[int]


@dataclass(frozen=True)
class PairExample:
    """A rendered preference pair: prompt + chosen and prompt + rejected.

    Each mask is 1 on its final response only (content and, unless masked out,
    the token ending the turn); earlier assistant turns of the prompt are
    context. ``prompt_len`` is the number of leading ids both sequences share
    before either response starts.
    """

    chosen_ids: list[int]
    chosen_mask: list[int]
    rejected_ids: list[int]
    rejected_mask: list[int]
    prompt_len: int
    rating: str | None = None
    safety: bool | None = None


def render_conversation(fmt: ChatFormat, conversation: Conversation, max_len: int) -> Example:
    """``conversation`` in ``fmt``; :class:`SkippedRow` ("too long") when it has over ``max_len`` tokens."""
    tokens = fmt.render(conversation.messages)
    _check_length(len(tokens.ids), max_len)
    return Example(tokens.ids, tokens.loss_mask)


def render_pair(
    fmt: ChatFormat, pair: Preference, max_len: int, *, mask_special: bool = False
) -> PairExample:
    """``pair`` in ``fmt``, each response's mask on that response only.

    ``mask_special`` also zeroes special and end-of-turn tokens (Llama 3 §4.1.4:
    DPO masks header and termination tokens out of the loss; see
    :func:`mask_special_tokens`). :class:`SkippedRow` ("too long") when either
    sequence has over ``max_len`` tokens.
    """
    chosen_ids, chosen_mask, chosen_start = _response(fmt, pair.prompt, pair.chosen, max_len)
    rejected_ids, rejected_mask, rejected_start = _response(fmt, pair.prompt, pair.rejected, max_len)
    if mask_special:
        chosen_mask = mask_special_tokens(fmt.tokenizer, chosen_ids, chosen_mask)
        rejected_mask = mask_special_tokens(fmt.tokenizer, rejected_ids, rejected_mask)
    prompt_len = min(_common_prefix(chosen_ids, rejected_ids), chosen_start, rejected_start)
    return PairExample(
        chosen_ids, chosen_mask, rejected_ids, rejected_mask, prompt_len, pair.rating, pair.safety
    )


def mask_special_tokens(tokenizer: Tokenizer, ids: Sequence[int], mask: Sequence[int]) -> list[int]:
    """``mask`` with 0 wherever ``ids`` holds a special or end-of-turn token of ``tokenizer``."""
    special = tokenizer.stop_ids | set(tokenizer.special_tokens.values())
    return [0 if token in special else m for token, m in zip(ids, mask, strict=True)]


def render_conversations(
    fmt: ChatFormat, conversations: Iterable[Conversation], max_len: int, skipped: SkipCounts
) -> Iterator[Example]:
    """:func:`render_conversation` of each; those too long or refused by the format are counted and left out."""
    return _render_all(lambda c: render_conversation(fmt, c, max_len), conversations, skipped)


def render_pairs(
    fmt: ChatFormat,
    pairs: Iterable[Preference],
    max_len: int,
    skipped: SkipCounts,
    *,
    mask_special: bool = False,
) -> Iterator[PairExample]:
    """:func:`render_pair` of each; those too long or refused by the format are counted and left out."""
    return _render_all(lambda p: render_pair(fmt, p, max_len, mask_special=mask_special), pairs, skipped)


def _render_all(
    render: Callable[[Record], Rendered], records: Iterable[Record], skipped: SkipCounts
) -> Iterator[Rendered]:
    for record in records:
        try:
            yield render(record)
        except SkippedRow as exc:
            skipped[exc.reason] += 1
        except ChatError as exc:  # a template's own refusal (raise_exception), say of a system message
            skipped["refused by the chat format"] += 1
            log.warning("skipped: %s", exc)


def _check_length(n: int, max_len: int) -> None:
    if max_len < 1:
        raise ConfigError(f"max_len must be a positive number of tokens, got {max_len}")
    if n > max_len:
        raise SkippedRow("too long", f"{n} tokens > {max_len}")


def _response(
    fmt: ChatFormat, prompt: Sequence[Message], response: str, max_len: int
) -> tuple[list[int], list[int], int]:
    """Ids of ``prompt`` answered by ``response``, a mask on the response's tokens only, and where they start."""
    tokens = fmt.render([*prompt, {"role": "assistant", "content": response}])
    _check_length(len(tokens.ids), max_len)
    mask = tokens.loss_mask
    if 1 not in mask:  # a template that drops the answer (JinjaChat renders whatever the template says)
        raise SkippedRow("response not rendered")
    end = len(mask) - mask[::-1].index(1)
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return tokens.ids, [0] * start + mask[start:], start


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --- packing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedSequence:
    """One training sequence of several examples: ``inputs``, ``targets`` and ``document_ids``, each (seq_len,).

    ``targets[t]`` is the next token where it is trained, else ``IGNORE_INDEX``
    (also at every example's last position and at padding); the model's
    ``forward(inputs, document_ids=..., targets=...)`` takes all three batched.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    document_ids: torch.Tensor


def next_token_targets(
    ids: Sequence[int], mask: Sequence[int], ignore_index: int = IGNORE_INDEX
) -> list[int]:
    """Shifted targets: ``ids[t + 1]`` where ``mask[t + 1]`` is 1, else ``ignore_index``; the last is ignored."""
    return [token if m else ignore_index for token, m in zip(ids[1:], mask[1:], strict=True)] + [ignore_index]


def pack(
    examples: Iterable[Example],
    seq_len: int,
    *,
    seed: int = 0,
    pad_id: int = 0,
    skipped: SkipCounts | None = None,
) -> list[PackedSequence]:
    """Examples shuffled (by ``seed``) and concatenated into sequences of ``seq_len`` tokens.

    Llama 2 §3.1 concatenates the prompts and answers of the SFT set; here an
    example is never split: each goes whole into the current sequence, or
    starts the next one if it does not fit (the rest of the current one is
    padding with ``pad_id``, ignored targets and a document id of its own).
    Examples longer than ``seq_len`` are counted in ``skipped`` as "too long".
    """
    if seq_len < 2:
        raise ConfigError(f"seq_len must be at least 2 tokens, got {seq_len}")
    order = list(examples)
    random.Random(seed).shuffle(order)
    groups: list[list[Example]] = []
    free = 0
    for example in order:
        if len(example.ids) > seq_len:
            if skipped is not None:
                skipped["too long"] += 1
            continue
        if len(example.ids) > free:
            groups.append([])
            free = seq_len
        groups[-1].append(example)
        free -= len(example.ids)
    return [_packed(group, seq_len, pad_id) for group in groups]


def _packed(group: Sequence[Example], seq_len: int, pad_id: int) -> PackedSequence:
    inputs: list[int] = []
    targets: list[int] = []
    documents: list[int] = []
    for document, example in enumerate(group):
        inputs += example.ids
        targets += next_token_targets(example.ids, example.loss_mask)
        documents += [document] * len(example.ids)
    padding = seq_len - len(inputs)
    inputs += [pad_id] * padding
    targets += [IGNORE_INDEX] * padding
    documents += [len(group)] * padding
    return PackedSequence(torch.tensor(inputs), torch.tensor(targets), torch.tensor(documents))


# --- the training stream -------------------------------------------------------------------------


class EpochStream:
    """Indices into ``size`` training items, epoch after epoch, each epoch in a fresh order.

    Epoch ``e`` visits every item once, in the permutation drawn from
    ``(seed, e)``, so the whole stream is fixed by the seed and the position
    in it is one number, :attr:`taken`: saved with every checkpoint
    (:meth:`state_dict`), it lets a resumed run draw exactly what an
    uninterrupted one would. Every post-training objective draws its
    examples (packed sequences, preference rows) from one.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"an epoch stream needs at least one item, got {size}")
        self.size = size
        self.seed = seed
        self.taken = 0  # items of the stream drawn so far
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The order of the items in ``epoch``: the permutation drawn from (seed, epoch)."""
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._orders[epoch]

    def take(self, n: int) -> list[int]:
        """The next ``n`` indices of the stream (crossing into the next epoch where one ends)."""
        picks = []
        for k in range(self.taken, self.taken + n):
            epoch, i = divmod(k, self.size)
            picks.append(int(self.order(epoch)[i]))
        self.taken += n
        return picks

    def upcoming(self) -> Iterator[int]:
        """The indices from the current position on, without taking them: :meth:`take` ``(n)`` returns the first ``n``.

        For a consumer that draws until its batch is full (DPO packs pairs into rows).
        """
        k = self.taken
        while True:
            epoch, i = divmod(k, self.size)
            yield int(self.order(epoch)[i])
            k += 1

    @property
    def epochs(self) -> float:
        """Passes over the items made so far."""
        return self.taken / self.size

    def state_dict(self) -> dict[str, Any]:
        return {"taken": self.taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position; ValueError when ``state`` is not one."""
        taken = state.get("taken")
        if not isinstance(taken, int) or isinstance(taken, bool) or taken < 0:
            raise ValueError(f"taken: expected an integer >= 0, got {taken!r}")
        self.taken = taken
