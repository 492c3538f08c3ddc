"""Ghost Attention (GAtt, Llama 2 §3.3): multi-turn SFT data that keeps an instruction in force, and its evaluation.

A chat model given an instruction in its first turn ("act as Napoleon",
"always answer in French") tends to forget it a few turns later (Llama 2
Figure 9, left). GAtt makes fine-tuning data that teaches it not to:

1. **An instruction per dialogue** (:func:`draw_instruction`). Llama 2 "created
   a few synthetic constraints to sample from: Hobbies ("You enjoy e.g.
   Tennis"), Language ("Speak in e.g. French"), or Public Figure ("Act as e.g.
   Napoleon")" and "construct[ed] the final instruction by randomly combining
   the above constraints". :data:`INSTRUCTIONS` holds such templates, plus
   instructions a program can check (:data:`CHECKABLE`: a language, the
   answer's last character, its length, its case), each an
   :class:`Instruction` with a short variant: Llama 2 made the instruction
   "less verbose" half of the time ("Always act as Napoleon from now" →
   "Figure: Napoleon."). Combined parts come from distinct categories, so a
   dialogue never gets two languages or two figures.
2. **Sampling** (:func:`build_gatt_dialogues`). Of a multi-turn dialogue
   [u1, a1, ..., un, an] only the user turns are kept; the instruction is
   "concatenate[d] to all the user messages" and every answer is sampled from
   the current chat model on that augmented dialogue, turn by turn, each
   answer the context of the next ("in a process analogous to Rejection
   Sampling"). Dialogues go in batches: one :func:`herd.infer.generate_ids`
   call per turn samples that turn of every dialogue of the batch, each prompt
   prefilled once.
3. **Training rows.** The instruction is kept in the first turn only (Llama 2
   "drop[s] it in all but the first turn"): as the system message
   (``placement="system"``, the default: the paper calls it "the final system
   message for the training data"), or appended to the first user message
   (``placement="user"``), in its short form with probability ``short_share``
   (½ in the paper). Since the earlier answers were sampled with an
   instruction the row no longer shows, Llama 2 "set[s] the loss to 0 for all
   the tokens from the previous turns, including assistant messages": every
   answer but the last carries ``"weight": 0`` (:mod:`herd.tokenizer.chat`).
   **One row per dialogue**, its last answer trained: the paper pairs "a
   context-dialogue and the sample with which to fine-tune a model", the
   intermediate answers being context. The rows are
   :mod:`herd.posttrain.data` conversations: ``herd sft`` trains on them as
   they are.
4. **Evaluation** (:func:`instruction_following`). A checkable instruction is
   given in the first turn only; the model answers every turn of the dialogue
   (its own answers are the context) and each answer is checked: the share of
   dialogues whose answer at turn t follows the instruction, t = 1..N, shows
   whether the model still attends to it (Llama 2 reports GAtt "consistent up
   to 20+ turns", Appendix A.3.5). :func:`plot_instruction_following` draws
   that share against the turn for several models.

A dialogue ends at its first empty answer, or before a turn whose prompt
leaves less than ``max_new_tokens`` of the model's context; one that ends
before its first answer is skipped and counted by reason.

**Resuming.** With ``progress``, :func:`build_gatt_dialogues` appends each
batch's answers to that file as one synced line (as rejection sampling does,
:func:`herd.posttrain.rejection_sampling.append_progress`); a run killed
midway continues at the first missing batch and returns the rows an
uninterrupted run would. Each call runs on a fresh KV cache, and its row ``b``
is seeded ``seed + t·N + start + b`` at turn ``t`` (from 0) of the batch
starting at dialogue ``start``, of ``N`` dialogues (``b`` counts the dialogues
of the batch still going): every sample of a run has a seed of its own. The
evaluation samples a few dialogues greedily and is not resumable.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from herd.errors import ConfigError, InputError
from herd.infer.engine import Engine
from herd.infer.generate import generate_ids
from herd.infer.sampling import SamplingParams
from herd.io.atomic import write_atomically
from herd.io.plot import pyplot, save_png
from herd.model.transformer import Transformer
from herd.posttrain.data import Conversation, Message, SkipCounts, read_conversations
from herd.posttrain.rejection_sampling import append_progress, open_progress, response_text
from herd.tokenizer.chat import ChatError, ChatFormat

Placement = Literal["system", "user"]


# --- instructions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """An instruction to keep through a dialogue: its text, a less verbose variant, its kind, and a checker.

    ``check(answer)`` is True when ``answer`` follows the instruction; ``None``
    for instructions no program can judge (a hobby, a persona).
    """

    text: str
    short: str
    category: str
    check: Callable[[str], bool] | None = field(default=None, compare=False)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Function words of each language :func:`in_language` tells apart (lower case, split at apostrophes).
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "english": _words(
        "the a an and or of to in is are was it that this for on with you i be have not but as at by "
        "from we they he she my your what do"
    ),
    "french": _words(
        "le la les un une des du de et ou est sont que qui dans pour pas ne je tu vous il elle nous ils "
        "sur avec au aux ce cette mais mon votre c l d j qu n très oui non"
    ),
    "spanish": _words(
        "el la los las un una unos y o de del que en es son por para con no yo tú usted él ella "
        "nosotros se lo su muy pero como sí está"
    ),
    "german": _words(
        "der die das den dem ein eine und oder ist sind nicht ich du sie er es wir mit für auf zu von im "
        "auch aber wie sehr ja nein"
    ),
}
#: The least share of an answer's words that must be the language's function words.
MIN_FUNCTION_SHARE = 0.15
_WORD = re.compile(r"[^\W\d_]+")
_CLOSERS = "\"')]}»”’*_ "


def in_language(answer: str, language: str) -> bool:
    """Whether ``answer`` reads as ``language`` (a key of :data:`FUNCTION_WORDS`), by its function words.

    At least :data:`MIN_FUNCTION_SHARE` of its words must be that language's
    function words, and more than those of any other listed language (French
    and Spanish share *la*, *de*, *que*).
    """
    words = _WORD.findall(answer.lower())
    if not words:
        return False
    shares = {
        name: sum(w in vocabulary for w in words) / len(words) for name, vocabulary in FUNCTION_WORDS.items()
    }
    own = shares.pop(language)
    return own >= MIN_FUNCTION_SHARE and all(own > other for other in shares.values())


def ends_with_question(answer: str) -> bool:
    """Whether ``answer``'s last character, after closing quotes, brackets and emphasis, is a question mark."""
    return answer.rstrip().rstrip(_CLOSERS).endswith(("?", "？"))


def at_most_words(answer: str, limit: int) -> bool:
    """Whether ``answer`` has between 1 and ``limit`` words (separated by white space)."""
    return 0 < len(answer.split()) <= limit


def in_capitals(answer: str) -> bool:
    """Whether ``answer`` has letters and none of them is lower case."""
    return any(c.isupper() for c in answer) and not any(c.islower() for c in answer)


def _hobby(name: str) -> Instruction:
    return Instruction(f"You enjoy {name}.", f"Hobby: {name}.", "hobby")


def _figure(name: str) -> Instruction:
    return Instruction(f"Always act as {name} from now on.", f"Figure: {name}.", "figure")


def _language(name: str) -> Instruction:
    check = partial(in_language, language=name.lower())
    return Instruction(f"Always answer in {name}.", f"Language: {name}.", "language", check)


#: Llama 2's three kinds of synthetic constraints (§3.3); its lists were generated by Llama 2-Chat, these are herd's.
HOBBIES = tuple(map(_hobby, ("tennis", "gardening", "chess", "astronomy", "baking", "hiking", "photography")))
FIGURES = tuple(
    map(_figure, ("Napoleon", "William Shakespeare", "Marie Curie", "Albert Einstein", "Cleopatra"))
)
LANGUAGES = tuple(map(_language, ("French", "Spanish", "German")))
#: Instructions a program can check, for :func:`instruction_following` (the languages are checkable too).
FORMATS = (
    Instruction(
        "Always end your answer with a question.", "End with a question.", "ending", ends_with_question
    ),
    Instruction(
        "Answer in at most 20 words.", "At most 20 words.", "length", partial(at_most_words, limit=20)
    ),
    Instruction("Always answer in capital letters.", "Capital letters only.", "case", in_capitals),
)
INSTRUCTIONS: tuple[Instruction, ...] = (*HOBBIES, *LANGUAGES, *FIGURES, *FORMATS)
CHECKABLE: tuple[Instruction, ...] = tuple(i for i in INSTRUCTIONS if i.check is not None)
#: The categories of :data:`INSTRUCTIONS`, in their order.
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(i.category for i in INSTRUCTIONS))


def of_categories(pool: Sequence[Instruction], categories: Sequence[str]) -> tuple[Instruction, ...]:
    """The instructions of ``pool`` in ``categories`` (all of ``pool`` when ``categories`` is empty).

    A study of one kind of instruction (e.g. building and evaluating with
    languages alone) narrows both the GAtt data and its evaluation.
    """
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ConfigError(f"unknown instruction categories {unknown} (known: {', '.join(CATEGORIES)})")
    chosen = tuple(i for i in pool if not categories or i.category in categories)
    if not chosen:
        raise ConfigError(f"no instruction of the pool is in the categories {list(categories)}")
    return chosen


def combine(parts: Sequence[Instruction]) -> Instruction:
    """One instruction of all ``parts``: texts and short texts joined, checkable when every part is."""
    if len(parts) == 1:
        return parts[0]
    checks = [part.check for part in parts if part.check is not None]
    return Instruction(
        " ".join(part.text for part in parts),
        " ".join(part.short for part in parts),
        "+".join(part.category for part in parts),
        _all_of(checks) if len(checks) == len(parts) else None,
    )


def _all_of(checks: Sequence[Callable[[str], bool]]) -> Callable[[str], bool]:
    return lambda answer: all(check(answer) for check in checks)


def draw_instruction(
    rng: random.Random, pool: Sequence[Instruction] = INSTRUCTIONS, max_parts: int = 2
) -> Instruction:
    """1 to ``max_parts`` instructions of ``pool`` from distinct categories, drawn with ``rng``, combined.

    Llama 2 "construct[s] the final instruction by randomly combining the
    above constraints" (§3.3); the number of parts is uniform.
    """
    if not pool:
        raise ConfigError("instructions: the pool of instructions is empty")
    if max_parts < 1:
        raise ConfigError(f"max_parts must be at least 1, got {max_parts}")
    wanted = rng.randint(1, max_parts)
    parts: list[Instruction] = []
    for candidate in rng.sample(list(pool), len(pool)):
        if len(parts) < wanted and candidate.category not in {part.category for part in parts}:
            parts.append(candidate)
    return combine(parts)


# --- dialogues -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialogue:
    """The user side of a conversation: its user turns, and its system message if it has one."""

    users: tuple[str, ...]
    system: str | None = None


def dialogues_from(conversations: Iterable[Conversation], min_turns: int = 2) -> list[Dialogue]:
    """The user turns (and system message) of each conversation with at least ``min_turns`` user turns."""
    dialogues = []
    for row in conversations:
        messages = row.messages
        users = tuple(m["content"] for m in messages if m["role"] == "user")
        if len(users) >= min_turns:
            system = messages[0]["content"] if messages[0]["role"] == "system" else None
            dialogues.append(Dialogue(users, system))
    return dialogues


def read_dialogues(path: str | Path, *, min_turns: int = 2, limit: int = 0) -> list[Dialogue]:
    """The first ``limit`` (0: all) dialogues of at least ``min_turns`` user turns in a conversations file.

    The file is read by :func:`herd.posttrain.data.read_conversations` (its
    assistant turns are dropped); none long enough is an :class:`InputError`.
    """
    dialogues = dialogues_from(read_conversations(path), min_turns)
    if not dialogues:
        raise InputError(f"{path}: no conversation with {min_turns} or more user turns")
    return dialogues[: limit or None]


def add_instruction(text: str | None, instruction: str) -> str:
    """``instruction`` after ``text`` (a paragraph apart), or alone when there is no text."""
    return f"{text}\n\n{instruction}" if text else instruction


def instructed_everywhere(dialogue: Dialogue, instruction: str) -> tuple[str | None, list[str]]:
    """The system message and user turns with ``instruction`` concatenated to every user turn (how GAtt samples)."""
    return dialogue.system, [add_instruction(user, instruction) for user in dialogue.users]


def instructed_once(
    dialogue: Dialogue, instruction: str, placement: Placement
) -> tuple[str | None, list[str]]:
    """The system message and user turns with ``instruction`` in the first turn only (how GAtt trains and is evaluated)."""
    if placement == "system":
        return add_instruction(dialogue.system, instruction), list(dialogue.users)
    return dialogue.system, [add_instruction(dialogue.users[0], instruction), *dialogue.users[1:]]


def conversation(system: str | None, users: Sequence[str], answers: Sequence[str]) -> list[Message]:
    """``system``, then ``users`` and ``answers`` alternating: a prompt when there is one more user turn."""
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    for n, user in enumerate(users):
        messages.append({"role": "user", "content": user})
        if n < len(answers):
            messages.append({"role": "assistant", "content": answers[n]})
    return messages


# --- sampling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampled:
    """A dialogue's answers, turn by turn, and why it ended early (``None``: every user turn was answered)."""

    answers: list[str]
    stopped: str | None = None


def sample_dialogues(
    model: Transformer,
    fmt: ChatFormat,
    turns: Sequence[tuple[str | None, Sequence[str]]],
    *,
    sampling: SamplingParams,
    max_new_tokens: int,
    turn_stride: int,
) -> list[Sampled]:
    """Answer every ``(system, user turns)`` dialogue turn by turn, each answer the context of the next.

    One :func:`generate_ids` call per turn for all dialogues still going (a
    fresh KV cache each); the call for turn ``t`` (from 0) is seeded
    ``sampling.seed + t * turn_stride``. A dialogue stops at an empty
    answer ("empty answer"), before a prompt that leaves less than
    ``max_new_tokens`` of the context ("too long"), or when the chat format
    refuses it ("refused by the chat format").
    """
    tokenizer = fmt.tokenizer
    answers: list[list[str]] = [[] for _ in turns]
    stopped: list[str | None] = [None] * len(turns)
    for t in range(max((len(users) for _, users in turns), default=0)):
        rows, prompts = [], []
        for b, (system, users) in enumerate(turns):
            if stopped[b] is not None or t >= len(users):
                continue
            try:
                ids = fmt.render_prompt(conversation(system, users[: t + 1], answers[b]))
            except ChatError:
                stopped[b] = "refused by the chat format"
                continue
            if len(ids) + max_new_tokens > model.config.max_seq_len:
                stopped[b] = "too long"
                continue
            rows.append(b)
            prompts.append(ids)
        if not rows:
            break
        seed = None if sampling.seed is None else sampling.seed + t * turn_stride
        generated = generate_ids(
            Engine(model),
            prompts,
            max_new_tokens=max_new_tokens,
            sampling=replace(sampling, seed=seed),
            stop_ids=tokenizer.stop_ids,
            vocab_limit=tokenizer.vocab_size,
        )
        for b, result in zip(rows, generated, strict=True):
            text = response_text(tokenizer, result)
            if text:
                answers[b].append(text)
            else:
                stopped[b] = "empty answer"
    return [Sampled(a, s) for a, s in zip(answers, stopped, strict=True)]


# --- building the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GAttChoice:
    """What dialogue ``index`` is given: the instruction it is sampled with, and whether its row keeps the short text."""

    instruction: Instruction
    short: bool

    @property
    def kept(self) -> str:
        """The instruction as the training row shows it, in its first turn."""
        return self.instruction.short if self.short else self.instruction.text


def choose(
    index: int, seed: int, pool: Sequence[Instruction], max_parts: int, short_share: float
) -> GAttChoice:
    """Dialogue ``index``'s instruction and text variant, drawn from ``(seed, index)`` alone."""
    rng = random.Random(f"gatt:{seed}:{index}")
    instruction = draw_instruction(rng, pool, max_parts)
    return GAttChoice(instruction, rng.random() < short_share)


def gatt_row(
    dialogue: Dialogue, choice: GAttChoice, answers: Sequence[str], placement: Placement, index: int
) -> dict[str, Any]:
    """The SFT row of a sampled dialogue: the instruction in its first turn only, every answer but the last weight 0."""
    system, users = instructed_once(dialogue, choice.kept, placement)
    messages = conversation(system, users[: len(answers)], answers)
    for message in messages[:-1]:
        if message["role"] == "assistant":
            message["weight"] = 0
    return {
        "messages": messages,
        "instruction": choice.instruction.text,
        "kept_instruction": choice.kept,
        "category": choice.instruction.category,
        "dialogue_index": index,
    }


def build_gatt_dialogues(
    model: Transformer,
    fmt: ChatFormat,
    dialogues: Sequence[Dialogue],
    *,
    instructions: Sequence[Instruction] = INSTRUCTIONS,
    placement: Placement = "system",
    max_parts: int = 2,
    short_share: float = 0.5,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    progress: str | Path | None = None,
    skipped: SkipCounts | None = None,
) -> list[dict[str, Any]]:
    """GAtt's SFT rows (see the module): one per dialogue that got an answer, in dialogue order.

    Each row is ``{"messages", "instruction", "kept_instruction", "category",
    "dialogue_index"}``: ``instruction`` is what every user turn was sampled
    with, ``kept_instruction`` what the row's first turn shows. Dialogues that
    got no answer are counted in ``skipped`` by reason. The paper gives no
    sampling settings; ``temperature`` and ``top_p`` are the model's to choose.
    ``progress``: a file where each batch's answers are kept, so that a killed
    run continues where it stopped (:class:`ConfigError` if it holds a run of
    other settings).
    """
    check_placement(placement)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 <= short_share <= 1:
        raise ConfigError(f"short_share must be in [0, 1], got {short_share}")
    sampling = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
    choices = [choose(i, seed, instructions, max_parts, short_share) for i in range(len(dialogues))]
    starts = list(range(0, len(dialogues), batch_size))
    settings = {
        "model": repr(model.config),
        "dialogues_sha256": _digest([[d.system, list(d.users)] for d in dialogues]),
        "instructions_sha256": _digest([[i.text, i.short, i.category] for i in instructions]),
        "max_parts": max_parts,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "batch_size": batch_size,
        "seed": seed,
    }
    path = Path(progress) if progress is not None else None
    records = open_progress(path, settings) if path is not None else []
    if [record.get("start") for record in records] != starts[: len(records)]:
        raise InputError(f"{path}: its batches are not this run's; remove it to start over")
    for start in starts[len(records) :]:
        batch = range(start, min(start + batch_size, len(dialogues)))
        turns = [instructed_everywhere(dialogues[i], choices[i].instruction.text) for i in batch]
        sampled = sample_dialogues(
            model,
            fmt,
            turns,
            sampling=replace(sampling, seed=seed + start),
            max_new_tokens=max_new_tokens,
            turn_stride=len(dialogues),
        )
        record = {
            "start": start,
            "dialogues": [{"answers": s.answers, "stopped": s.stopped} for s in sampled],
        }
        if path is not None:
            append_progress(path, record)
        records.append(record)
    rows = []
    for record in records:
        for b, entry in enumerate(record["dialogues"]):
            i = record["start"] + b
            if entry["answers"]:
                rows.append(gatt_row(dialogues[i], choices[i], entry["answers"], placement, i))
            elif skipped is not None:
                skipped[entry["stopped"]] += 1
    return rows


def write_rows(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """``rows`` as JSON Lines at ``path``, written atomically (:func:`herd.io.atomic.write_atomically`)."""
    lines = [(json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8") for row in rows]
    write_atomically(path, lambda f: f.writelines(lines))
    return Path(path)


def check_placement(placement: str) -> None:
    """Raise :class:`ConfigError` unless ``placement`` is ``system`` or ``user``."""
    if placement not in ("system", "user"):
        raise ConfigError(f"placement must be 'system' or 'user', got {placement!r}")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode("utf-8")).hexdigest()


# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Following:
    """How well a model keeps instructions given in the first turn only (:func:`instruction_following`).

    ``shares[t - 1]``: the share of the dialogues answered at turn t whose
    answer follows their instruction; ``counts[t - 1]``: how many were
    answered at turn t. ``passed``, ``answers`` and ``instructions`` are per
    dialogue (``passed`` and ``answers`` per answered turn).
    """

    shares: list[float]
    counts: list[int]
    passed: list[list[bool]]
    answers: list[list[str]]
    instructions: list[str]


def following_shares(answers: Sequence[Sequence[str]], instructions: Sequence[Instruction]) -> Following:
    """Check each dialogue's answers against its instruction, and the share that follow it at each turn."""
    passed = []
    for texts, instruction in zip(answers, instructions, strict=True):
        if instruction.check is None:
            raise ConfigError(f"instruction {instruction.text!r} has no checker; evaluate checkable ones")
        passed.append([instruction.check(text) for text in texts])
    turns = max((len(p) for p in passed), default=0)
    counts = [sum(len(p) > t for p in passed) for t in range(turns)]
    shares = [sum(p[t] for p in passed if len(p) > t) / n for t, n in enumerate(counts)]
    return Following(shares, counts, passed, [list(a) for a in answers], [i.text for i in instructions])


def instruction_following(
    model: Transformer,
    fmt: ChatFormat,
    dialogues: Sequence[Dialogue],
    *,
    instructions: Sequence[Instruction] = CHECKABLE,
    placement: Placement = "system",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    batch_size: int = 8,
    seed: int = 0,
) -> Following:
    """Give dialogue ``i`` instruction ``i % len(instructions)`` in its first turn only; how often the answers follow it.

    The model answers every user turn, its own answers as the context
    (greedy by default), batched as :func:`build_gatt_dialogues` samples; each
    answer is checked by the instruction's ``check`` (every instruction must
    have one). Compare models on the same dialogues, instructions and
    settings: :func:`plot_instruction_following` draws their shares per turn.
    """
    check_placement(placement)
    if not dialogues:
        raise InputError("instruction_following: no dialogues to evaluate")
    if not instructions:
        raise ConfigError("instructions: the list of instructions to evaluate is empty")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    given = [instructions[i % len(instructions)] for i in range(len(dialogues))]
    sampling = SamplingParams(temperature=temperature, seed=seed)
    answers: list[list[str]] = []
    for start in range(0, len(dialogues), batch_size):
        batch = range(start, min(start + batch_size, len(dialogues)))
        turns = [instructed_once(dialogues[i], given[i].text, placement) for i in batch]
        sampled = sample_dialogues(
            model,
            fmt,
            turns,
            sampling=replace(sampling, seed=seed + start),
            max_new_tokens=max_new_tokens,
            turn_stride=len(dialogues),
        )
        answers += [s.answers for s in sampled]
    return following_shares(answers, given)


def plot_instruction_following(results: Mapping[str, Following], dst: str | Path) -> Path:
    """A PNG of the share of dialogues following their instruction against the turn, one line per labelled model."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig, ax = pyplot().subplots(figsize=(7, 4))
    for label, result in results.items():
        ax.plot(range(1, len(result.shares) + 1), result.shares, "o-", label=label)
    ax.set_xlabel("turn")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("dialogues following the instruction")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Instruction given in the first turn only (Llama 2 §3.3, Ghost Attention)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_png(fig, dst)
