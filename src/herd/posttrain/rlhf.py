"""The iterative RLHF loop (Llama 2 §3.2.3): rounds of rejection sampling, then PPO, each round's policy feeding the next.

Llama 2-Chat went through five versions, RLHF-V1 to V5: V1 to V4 were
rejection-sampling fine-tuning alone (sample K answers per prompt with the
current model, keep the reward model's best, fine-tune on them), V5 was
rejection sampling followed by PPO (§3.2.3, "we combined the two sequentially,
applying PPO on top of the resulted Rejection Sampling checkpoint"). This
module composes herd's stages into such a schedule; it has no training or
generation loop of its own, only the stages' functions, the plumbing between
them and the reports.

**A round** runs the stages it names, in this order:

* ``rs``: :func:`herd.posttrain.rejection_sampling.rejection_sample` with the
  round's policy and the run's reward model, into ``OUT/round_<k>/rs``;
* ``sft``: :func:`herd.posttrain.sft.sft` from the round's policy on that
  round's ``rs/sft.jsonl`` (the best answer per prompt), into ``round_<k>/sft``;
  with ``pool``, on ``round_<k>/pooled.jsonl``, the best answer per prompt over
  this and every earlier round (:func:`pool_best`; Llama 2 from RLHF-V3 on);
* ``ppo``: :func:`herd.posttrain.ppo.ppo` from the round's SFT model (or
  from the round's policy without one) against the reward model, into
  ``round_<k>/ppo``.

The round's policy is the previous round's last ``final/`` directory (the
run's ``init`` for round 1). Each stage reads its own config file (``rs``,
``sft``, ``ppo`` tables: ``config`` and ``set``, overrides in ``--set`` syntax
for every round) with the round's own overrides on top (``[[round]]`` ``rs``,
``sft``, ``ppo``); the loop then sets the keys it owns: the policy, the reward
model, the output directory and, for SFT, ``data.train`` (a stage's own
setting of these is replaced). Every stage config of every round is read and
checked before anything runs.

**The round report** (:func:`evaluate`): one answer per held-out prompt
(``eval.prompts``), sampled by :func:`herd.posttrain.rollout.rollout` at
``eval.temperature`` with the same seeds in every round, scored by the reward
model (:func:`herd.posttrain.rejection_sampling.score_conversations`). Round 0 is
the initial policy. The figures: the mean reward; the KL to the initial policy
per answer token (log π − log π_0 on the round's own answers, the estimate
PPO's held-out ``eval_kl`` uses: unbiased, and slightly negative on a few
answers when the policy has hardly moved);
the **win rate judged by the reward model**: the share of held-out prompts
whose answer scores higher than the previous round's answer to the same
prompt, ties counting half (``win_rate``; ``win_rate_vs_initial`` compares
with round 0); the mean answer length in tokens and the share of answers that
ended. Written to ``round_<k>/eval.jsonl`` and ``round_<k>/report.md``, and
gathered in ``OUT/rounds.json``, ``OUT/summary.md`` (one row per round) and
``OUT/rounds.png`` (reward and win rates per round).

**Resume at round granularity.** The run's config is saved as
``OUT/config.json``; ``resume`` continues with it (the overrides given then
apply on top), as a resumed training run does. Each finished stage is recorded in
``round_<k>/stages.json`` with a digest of its resolved config. With
``resume``, a recorded stage whose outputs exist is skipped (a log line says
so); a stage recorded with other settings is a :class:`ConfigError`; an
unfinished stage continues through its own resume (the trainer's newest
checkpoint for SFT and PPO, the progress file for rejection sampling). Without
``resume`` an output directory that holds a run is refused; ``overwrite``
redoes every stage, replacing only the files this loop and its stages wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from herd import config as loader
from herd.checkpoint.sequence_classification import SequenceClassificationReader
from herd.errors import ConfigError, HerdError
from herd.infer.loading import load_for_inference
from herd.io.atomic import write_atomically
from herd.io.plot import pyplot, save_png
from herd.posttrain.config import SFTConfig, resolve_init
from herd.posttrain.ppo import PPOConfig, ppo
from herd.posttrain.rejection_sampling import (
    PROGRESS,
    RSConfig,
    check_same_vocabulary,
    load_prompts,
    rejection_sample,
    score_conversations,
)
from herd.posttrain.reward_model import RewardModel
from herd.posttrain.rollout import response_logprobs, rollout
from herd.posttrain.sft import FINAL_DIR, sft
from herd.tokenizer.chat import chat_format
from herd.train.checkpointing import latest_checkpoint
from herd.train.outdir import SUMMARY_FILE, existing_run

log = logging.getLogger("herd.posttrain")

#: A round's stages, in the order they run.
Stage = Literal["rs", "sft", "ppo"]
STAGES: tuple[Stage, ...] = get_args(Stage)
ROUNDS_JSON, SUMMARY_MD, ROUNDS_PNG, CONFIG_JSON = "rounds.json", "summary.md", "rounds.png", "config.json"
STAGES_JSON, EVAL_JSONL, REPORT_MD, POOLED_JSONL = "stages.json", "eval.jsonl", "report.md", "pooled.jsonl"
#: Keys of a stage config that change how it shows progress or survives crashes, not what it computes.
_NOT_SETTINGS = (("log", "progress"), ("fault", "max_restarts"))


# ---- the config ------------------------------------------------------------------------------------


@dataclass
class StageConfig:
    """Where a stage's config comes from: a TOML file of it (empty: its defaults) and ``--set`` overrides."""

    config: str = ""
    set: list[str] = field(default_factory=list)


@dataclass
class RoundConfig:
    """One round: its stages (``rs`` needs ``sft``) and this round's overrides of each stage's config.

    ``pool``: SFT trains on the best answer per prompt over this round's and
    every earlier round's rejection sampling, as Llama 2 did from RLHF-V3 on
    after training on the latest round's alone had regressed (§3.2.3).
    """

    stages: list[Stage] = field(default_factory=lambda: ["rs", "sft"])
    pool: bool = False
    rs: list[str] = field(default_factory=list)
    sft: list[str] = field(default_factory=list)
    ppo: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    """The held-out prompts every round answers, once each: the first ``max_prompts`` (0: all) usable ones.

    ``temperature`` 1 samples from the policy's own distribution, as PPO's
    validation does; the seed of prompt ``i`` is ``seed + i`` in every round,
    so rounds are compared on paired samples.
    """

    prompts: str = ""
    max_prompts: int = 0
    max_new_tokens: int = 128
    temperature: float = 1.0
    batch_prompts: int = 8
    seed: int = 0
    chat_format: Literal["auto", "llama2", "llama3", "jinja"] = "auto"


@dataclass
class RLHFConfig:
    """An iterative RLHF run (:func:`rlhf`), read from TOML by :func:`load_rlhf_config`.

    ``init``: the policy of round 1, any checkpoint :func:`herd.load_model`
    reads or ``smollm2-135m-instruct``. ``reward_model``: the
    ``LlamaForSequenceClassification`` directory that scores rejection
    sampling, PPO and the round reports. ``round``: the ``[[round]]`` tables,
    Llama 2's RLHF-V1, V2, ...
    """

    out_dir: str = "runs/rlhf"
    init: str = ""
    reward_model: str = ""
    rs: StageConfig = field(default_factory=StageConfig)
    sft: StageConfig = field(default_factory=StageConfig)
    ppo: StageConfig = field(default_factory=StageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    round: list[RoundConfig] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def checks(self) -> list[tuple[bool, str]]:
        """(condition, message naming the key) pairs; :meth:`validate` raises the first failing one."""
        checks = [
            (bool(self.out_dir), "out_dir must name a directory"),
            (bool(self.init), "init must name the policy of round 1 (a path, or smollm2-135m-instruct)"),
            (bool(self.reward_model), "reward_model must name a reward model directory"),
            (bool(self.eval.prompts), "eval.prompts must name the held-out prompts (a .jsonl file)"),
            (self.eval.max_prompts >= 0, "eval.max_prompts must be >= 0 (0: every prompt)"),
            (self.eval.max_new_tokens >= 1, "eval.max_new_tokens must be at least 1"),
            (self.eval.temperature >= 0, "eval.temperature must be >= 0"),
            (self.eval.batch_prompts >= 1, "eval.batch_prompts must be at least 1"),
            (self.eval.seed >= 0, "eval.seed must be >= 0"),
            (bool(self.round), "round must hold at least one [[round]] table"),
        ]
        for k, round_ in enumerate(self.round):
            stages = round_.stages
            checks += [
                (
                    bool(stages) and list(stages) == sorted(set(stages), key=STAGES.index),
                    f"round[{k}].stages must name stages once each, in the order {', '.join(STAGES)}",
                ),
                ("rs" not in stages or "sft" in stages, f'round[{k}].stages: "rs" needs "sft" after it'),
                (not round_.pool or "sft" in stages, f'round[{k}].pool needs an "sft" stage'),
            ]
        return checks

    def validate(self) -> RLHFConfig:
        """Raise a :class:`ConfigError` for the first failing check; returns self."""
        for ok, message in self.checks():
            if not ok:
                raise ConfigError(message)
        return self


def load_rlhf_config(
    path: Path | str, overrides: Iterable[str] = (), output: Path | str | None = None, *, resume: bool = False
) -> RLHFConfig:
    """The validated :class:`RLHFConfig` of a TOML file, with ``--set`` overrides and ``-o`` applied.

    With ``resume``, the config the run saved in its ``out_dir`` (``config.json``)
    replaces the file's, the overrides and ``-o`` applying on top, as
    ``herd sft --resume`` continues with the run's saved config.
    """
    data = loader.load_toml(path)
    saved = Path(str(output if output is not None else data.get("out_dir", RLHFConfig.out_dir))) / CONFIG_JSON
    if resume and saved.is_file():
        try:
            data = json.loads(saved.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{saved}: damaged saved config ({exc})") from None
    data = loader.apply_overrides(data, overrides)
    if output is not None:
        data["out_dir"] = str(output)
    return loader.from_dict(RLHFConfig, data).validate()


# ---- the plan: every stage of every round, resolved before anything runs -----------------------------


StageRun = RSConfig | SFTConfig | PPOConfig


@dataclass(frozen=True)
class RoundPlan:
    """Round ``index`` (1-based): its directory, the policy it starts from and its stages' resolved configs."""

    index: int
    out: Path
    policy: str
    stages: dict[Stage, StageRun]
    pooled: tuple[Path, ...] = ()  # the rejection-sampling rows SFT pools (``pool``), earliest round first

    @property
    def final_policy(self) -> str:
        """The ``final/`` directory of the round's last trained stage: the next round's policy."""
        last = "ppo" if "ppo" in self.stages else "sft"
        return str(self.out / last / FINAL_DIR)


def round_dir(out: Path, index: int) -> Path:
    """``OUT/round_<index>`` (round 0: the initial policy's report)."""
    return out / f"round_{index}"


def plan(config: RLHFConfig, trainer_overrides: Sequence[str] = ()) -> list[RoundPlan]:
    """Every round's stage configs, read and checked: the stage file, its ``set``, the round's overrides, then
    the keys the loop owns; ``trainer_overrides`` go last on SFT and PPO (``log.progress``, ``fault.max_restarts``).

    An error in a stage's config is a :class:`ConfigError` naming the round, the stage and the file.
    """
    out = Path(config.out_dir)
    policy = config.init
    rounds = []
    sampled: list[Path] = []  # the sft.jsonl of every round with rejection sampling so far
    for k, round_ in enumerate(config.round, start=1):
        where = round_dir(out, k)
        if "rs" in round_.stages:
            sampled.append(where / "rs" / "sft.jsonl")
        pooled = tuple(sampled) if round_.pool else ()
        stages: dict[Stage, StageRun] = {}
        for stage in round_.stages:
            source: StageConfig = getattr(config, stage)
            owned = _owned_keys(stage, config, where, policy, stages, pool=bool(pooled))
            extra = trainer_overrides if stage != "rs" else ()
            overrides = [*source.set, *getattr(round_, stage), *owned, *extra]
            try:
                stages[stage] = _load_stage(stage, source.config, overrides)
            except ConfigError as exc:
                raise ConfigError(f"round {k} {stage} ({source.config or 'defaults'}): {exc}") from None
        rounds.append(RoundPlan(k, where, policy, stages, pooled))
        policy = rounds[-1].final_policy
    return rounds


def _owned_keys(
    stage: Stage, config: RLHFConfig, where: Path, policy: str, earlier: dict[Stage, StageRun], *, pool: bool
) -> list[str]:
    """The ``--set`` items the loop sets on a stage: its start, the reward model, its data and where it writes."""
    rm = f"reward_model={json.dumps(config.reward_model)}"
    out = json.dumps(str(where / stage))
    if stage == "rs":
        return [f"policy={json.dumps(policy)}", rm, f"output={out}"]
    if stage == "sft":
        rows = json.dumps(str(where / POOLED_JSONL if pool else where / "rs" / "sft.jsonl"))
        return [f"init={json.dumps(policy)}", f"out_dir={out}", f"data.train={rows}"]
    start = str(where / "sft" / FINAL_DIR) if "sft" in earlier else policy
    return [f"init={json.dumps(start)}", rm, f"out_dir={out}"]


def _load_stage(stage: Stage, path: str, overrides: Sequence[str]) -> StageRun:
    """The validated config of ``stage``: the TOML file at ``path`` (empty: the defaults) with ``overrides``."""
    data = loader.apply_overrides(loader.load_toml(path) if path else {}, overrides)
    kind: type[StageRun] = {"rs": RSConfig, "sft": SFTConfig, "ppo": PPOConfig}[stage]
    return loader.from_dict(kind, data).validate()


def settings_digest(stage_config: StageRun) -> str:
    """A digest of what a stage computes: its resolved config but the progress display and restart count."""
    values = dataclasses.asdict(stage_config)
    for section, key in _NOT_SETTINGS:
        values.get(section, {}).pop(key, None)
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


# ---- running the rounds ------------------------------------------------------------------------------


@dataclass
class RLHFResult:
    """What :func:`rlhf` did: the rounds' figures (``rounds.json``), the stages run and those skipped."""

    out_dir: str
    rounds: list[dict[str, Any]]
    stages_run: list[str]
    stages_skipped: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``herd rlhf --json``)."""
        return dataclasses.asdict(self)


def rlhf(
    config: RLHFConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    trainer_overrides: Sequence[str] = (),
) -> RLHFResult:
    """Run (or with ``resume`` continue) the rounds of ``config``; see the module for what is written.

    ``progress`` shows the stages' progress bars; ``trainer_overrides``
    (``--set`` items) apply to every SFT and PPO stage after everything else.
    """
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: continue the run or replace it")
    rounds = plan(config, trainer_overrides)
    out = Path(config.out_dir)
    first_record = round_dir(out, 0) / STAGES_JSON
    if not resume and not overwrite and first_record.exists():
        raise ConfigError(
            f"out_dir {out} already holds an rlhf run ({first_record}); pass --resume to continue it or "
            "--overwrite to replace it (or choose another out_dir)"
        )
    check_inputs(config)
    if overwrite:
        _remove_own_files(out, len(rounds))
    write_json(out / CONFIG_JSON, config.to_dict())
    result = RLHFResult(str(out), [], [], [])
    entries = [_evaluated(config, 0, config.init, {}, result, resume)]
    for round_ in rounds:
        summaries = {
            stage: _run_stage(round_, stage, stage_config, result, resume, overwrite, progress)
            for stage, stage_config in round_.stages.items()
        }
        entries.append(_evaluated(config, round_.index, round_.final_policy, summaries, result, resume))
        _win_rates(entries)
        _write_report(round_dir(out, round_.index), entries[-1], entries[-2])
        write_json(out / ROUNDS_JSON, {"rounds": entries})
    write_summary(out, entries)
    result.rounds = entries
    return result


def check_inputs(config: RLHFConfig) -> None:
    """Raise a :class:`ConfigError` naming the key, before anything is written, for a missing initial policy,
    reward model or held-out prompts file (the stages check their own inputs when they start)."""
    if not resolve_init(config.init).exists():
        raise ConfigError(f"init: {config.init}: no such checkpoint file or directory")
    try:
        with SequenceClassificationReader(config.reward_model):
            pass
    except HerdError as exc:
        raise ConfigError(f"reward_model: {exc}") from None
    if not Path(config.eval.prompts).is_file():
        raise ConfigError(f"eval.prompts: no such file: {config.eval.prompts}")


def _remove_own_files(out: Path, rounds: int) -> None:
    """Before ``overwrite``: the loop's files and rejection sampling's progress files (the trainer clears its own)."""
    for name in (ROUNDS_JSON, SUMMARY_MD, ROUNDS_PNG, CONFIG_JSON):
        (out / name).unlink(missing_ok=True)
    for k in range(rounds + 1):
        where = round_dir(out, k)
        for name in (STAGES_JSON, EVAL_JSONL, REPORT_MD, POOLED_JSONL, f"rs/{PROGRESS}"):
            (where / name).unlink(missing_ok=True)


def _records(where: Path) -> dict[str, Any]:
    path = where / STAGES_JSON
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: damaged ({exc}); remove it to redo the round's stages") from None
    return records if isinstance(records, dict) else {}


def _finished(where: Path, stage: str, digest: str, outputs: Sequence[Path]) -> dict[str, Any] | None:
    """The recorded summary of a finished ``stage`` of the round in ``where``, if its outputs exist.

    A record of other settings is a :class:`ConfigError`: the stages after it were built on it.
    """
    record = _records(where).get(stage)
    if not isinstance(record, dict) or not all(path.exists() for path in outputs):
        return None
    if record.get("settings_sha256") != digest:
        raise ConfigError(
            f"{where / STAGES_JSON}: {stage} finished with other settings than this config's; "
            "pass --overwrite to redo the rounds (or choose another out_dir)"
        )
    return record.get("summary", {})


def _record(where: Path, stage: str, digest: str, summary: dict[str, Any]) -> None:
    records = _records(where)
    records[stage] = {"settings_sha256": digest, "summary": summary}
    write_json(where / STAGES_JSON, records)


def _run_stage(
    round_: RoundPlan,
    stage: Stage,
    stage_config: StageRun,
    result: RLHFResult,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> dict[str, Any]:
    """Run one stage of a round (or, with ``resume``, skip it when finished); its summary."""
    name = f"round {round_.index} {stage}"
    where = round_.out / stage
    digest = settings_digest(stage_config)
    outputs = [where / SUMMARY_FILE] + ([where / FINAL_DIR] if stage != "rs" else [])
    done = _finished(round_.out, stage, digest, outputs) if resume else None
    if done is not None:
        log.info("%s: finished before (%s), skipped", name, where)
        result.stages_skipped.append(name)
        return done
    log.info("%s: running into %s", name, where)
    if stage == "sft" and round_.pooled:
        pool_best(round_.pooled, round_.out / POOLED_JSONL)
    summary: dict[str, Any]
    if isinstance(stage_config, RSConfig):
        summary = rejection_sample(stage_config, progress=progress).summary
    else:
        train: Callable[..., Any] = sft if stage == "sft" else ppo
        summary = train(stage_config, **_start_mode(where, resume, overwrite)).to_dict()
    _record(round_.out, stage, digest, summary)
    result.stages_run.append(name)
    return summary


def pool_best(sources: Sequence[Path], dst: Path) -> int:
    """Write to ``dst`` the best-rewarded row per prompt of rejection sampling's ``sft.jsonl`` files ``sources``.

    A prompt is its conversation before the answer; on a tie the earlier
    file's row stays. Returns the number of rows written.
    """
    best: dict[str, dict[str, Any]] = {}
    for path in sources:
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            key = json.dumps(row["messages"][:-1], sort_keys=True)
            if key not in best or row["reward"] > best[key]["reward"]:
                best[key] = row
    rows = [(json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8") for row in best.values()]
    write_atomically(dst, lambda f: f.writelines(rows))
    return len(rows)


def _start_mode(out_dir: Path, resume: bool, overwrite: bool) -> dict[str, bool]:
    """How a trainer stage starts: with ``resume``, from its newest checkpoint, or afresh over a run of its own
    that was stopped before its first one; with ``overwrite``, afresh; else new (refused over another run)."""
    if resume and latest_checkpoint(out_dir) is not None:
        return {"resume": True}
    return {"overwrite": overwrite or (resume and bool(existing_run(out_dir)))}


# ---- the round report ----------------------------------------------------------------------------------


def _evaluated(
    config: RLHFConfig,
    index: int,
    policy: str,
    summaries: dict[Stage, dict[str, Any]],
    result: RLHFResult,
    resume: bool,
) -> dict[str, Any]:
    """Round ``index``'s entry of ``rounds.json``: its held-out figures (evaluated, or read back) and stages."""
    where = round_dir(Path(config.out_dir), index)
    settings = {
        "eval": dataclasses.asdict(config.eval),
        "policy": policy,
        "reward_model": config.reward_model,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    rows = None
    if resume and _finished(where, "eval", digest, [where / EVAL_JSONL]) is not None:
        rows = [json.loads(line) for line in (where / EVAL_JSONL).read_text("utf-8").splitlines()]
        result.stages_skipped.append(f"round {index} eval")
    if rows is None:
        rows = evaluate(config, policy, reference=config.init if index else None)
        write_atomically(
            where / EVAL_JSONL,
            lambda f: f.writelines((json.dumps(row, ensure_ascii=False) + "\n").encode() for row in rows),
        )
        _record(where, "eval", digest, {})
        result.stages_run.append(f"round {index} eval")
    tokens = sum(row["tokens"] for row in rows)
    return {
        "round": index,
        "name": f"RLHF-V{index}" if index else "initial",
        "stages": list(summaries),
        "policy": policy,
        "prompts": len(rows),
        "reward": _mean(row["reward"] for row in rows),
        "kl": sum(row["kl_sum"] for row in rows) / tokens if tokens else 0.0,
        "length": tokens / len(rows),
        "ended": _mean(float(row["ended"]) for row in rows),
        "rewards": [row["reward"] for row in rows],
        "examples": [{"prompt": row["prompt"], "answer": row["answer"]} for row in rows[:2]],
        "stage_figures": {stage: _stage_figures(stage, s) for stage, s in summaries.items()},
    }


@torch.inference_mode()
def evaluate(config: RLHFConfig, policy: str, reference: str | None) -> list[dict[str, Any]]:
    """One answer per held-out prompt from ``policy``: its text, reward, length, ending and summed log-ratio.

    ``kl_sum`` is Σ (log π − log π_ref) over the answer's tokens, π_ref the
    ``reference`` checkpoint (None: the policy itself, so 0), both from one
    training forward (:func:`herd.posttrain.rollout.response_logprobs`).
    Prompts go ``eval.batch_prompts`` at a time; prompt ``i`` samples with
    seed ``eval.seed + i`` whatever the batch.
    """
    ev = config.eval
    model, tokenizer = load_for_inference(str(resolve_init(policy, "policy")))
    fmt = chat_format(tokenizer, None if ev.chat_format == "auto" else ev.chat_format)
    # The held-out prompts are read, rendered and filtered as rejection sampling reads its own.
    reader = RSConfig(
        policy=policy,
        reward_model=config.reward_model,
        prompts=ev.prompts,
        limit=ev.max_prompts,
        max_new_tokens=ev.max_new_tokens,
    )
    prompts = load_prompts(reader, fmt, model.config.max_seq_len)
    reward_model = RewardModel.from_pretrained(config.reward_model).eval()
    check_same_vocabulary(reader, model, tokenizer, reward_model)
    ref = model if reference is None else load_for_inference(str(resolve_init(reference, "init")))[0]
    rows = []
    for start in range(0, len(prompts), ev.batch_prompts):
        batch = prompts[start : start + ev.batch_prompts]
        drawn = rollout(
            model,
            [p.ids for p in batch],
            samples=1,
            max_new_tokens=ev.max_new_tokens,
            stop_ids=tokenizer.stop_ids,
            temperature=ev.temperature,
            seed=ev.seed + start,
            pad_id=tokenizer.eos_id or 0,
        )
        mask = drawn.response_mask
        log_ratio = (
            response_logprobs(model, drawn.tokens, mask) - response_logprobs(ref, drawn.tokens, mask)
        ) * mask
        answers = drawn.texts(tokenizer)
        rewards = score_conversations(
            reward_model,
            fmt,
            [(prompt.messages, answer) for prompt, answer in zip(batch, answers, strict=True)],
            batch_size=len(batch),
        )
        for b, prompt in enumerate(batch):
            rows.append(
                {
                    "prompt_index": start + b,
                    "prompt": prompt.messages[-1]["content"],
                    "answer": answers[b],
                    "reward": rewards[b],
                    "tokens": int(mask[b].sum()),
                    "ended": bool(drawn.ended[b]),
                    "kl_sum": float(log_ratio[b].sum()),
                }
            )
    return rows


def win_rate(rewards: Sequence[float], against: Sequence[float]) -> float:
    """The share of prompts whose reward beats ``against``'s on the same prompt, ties counting half."""
    pairs = list(zip(rewards, against, strict=True))
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def _win_rates(entries: list[dict[str, Any]]) -> None:
    """Set the last entry's win rates against the previous round's answers and the initial policy's."""
    last = entries[-1]
    last["win_rate"] = win_rate(last["rewards"], entries[-2]["rewards"])
    last["win_rate_vs_initial"] = win_rate(last["rewards"], entries[0]["rewards"])


def _stage_figures(stage: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of a stage's summary that the round report shows."""
    keys = {
        "rs": ("mean_best_reward", "mean_median_reward", "sft_rows"),
        "sft": ("steps", "final_loss", "eval_loss"),
        "ppo": ("steps", "reward_start", "reward_end", "kl_end"),
    }[stage]
    return {key: summary.get(key) for key in keys}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _write_report(where: Path, entry: dict[str, Any], previous: dict[str, Any]) -> None:
    """``round_<k>/report.md``: the round's held-out figures, its stages' figures and two answers beside the last round's."""
    lines = [
        f"# Round {entry['round']} ({entry['name']}: {' + '.join(entry['stages'])})",
        "",
        f"Policy `{entry['policy']}`, {entry['prompts']} held-out prompts, one answer each (Llama 2 §3.2.3).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| mean reward | {_number(entry['reward'])} (previous round {_number(previous['reward'])}) |",
        f"| win rate vs previous round (reward model) | {_percent(entry['win_rate'])} |",
        f"| win rate vs initial policy | {_percent(entry['win_rate_vs_initial'])} |",
        f"| KL to the initial policy | {_number(entry['kl'])} nats/token |",
        f"| mean answer length | {entry['length']:.1f} tokens |",
        f"| answers ended | {_percent(entry['ended'])} |",
        "",
        "## Stages",
        "",
    ]
    for stage, figures in entry["stage_figures"].items():
        cells = ", ".join(f"{key} {_number(value)}" for key, value in figures.items())
        lines.append(f"- `{stage}/`: {cells}")
    lines += ["", "## Examples", ""]
    for this, before in zip(entry["examples"], previous["examples"], strict=False):
        lines += [
            f"**Prompt:** {_quote(this['prompt'])}",
            "",
            f"- previous round: {_quote(before['answer'])}",
            f"- this round: {_quote(this['answer'])}",
            "",
        ]
    write_atomically(where / REPORT_MD, lambda f: f.write(("\n".join(lines) + "\n").encode("utf-8")))


def _quote(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return (text[:limit] + " …" if len(text) > limit else text) or "(empty)"


def write_summary(out: Path, entries: Sequence[dict[str, Any]]) -> None:
    """``OUT/summary.md`` (one row per round) and ``OUT/rounds.png`` (reward and win rates per round)."""
    lines = [
        "# Iterative RLHF (Llama 2 §3.2.3)",
        "",
        "Held-out answers of each round's policy scored by the reward model; the win rate counts the "
        "prompts whose answer beats the previous round's (ties half). Round 0 is the initial policy.",
        "",
        "| round | stages | mean reward | win rate vs previous | win rate vs initial | KL to initial | length | ended |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['round']} ({e['name']}) | {' + '.join(e['stages']) or '-'} | {_number(e['reward'])} | "
        f"{_percent(e.get('win_rate'))} | {_percent(e.get('win_rate_vs_initial'))} | {_number(e['kl'])} | "
        f"{e['length']:.1f} | {_percent(e['ended'])} |"
        for e in entries
    ]
    lines += ["", f"![reward and win rate per round]({ROUNDS_PNG})"]
    write_atomically(out / SUMMARY_MD, lambda f: f.write(("\n".join(lines) + "\n").encode("utf-8")))
    plot_rounds(entries, out / ROUNDS_PNG)


def plot_rounds(entries: Sequence[dict[str, Any]], dst: Path) -> Path:
    """The mean held-out reward per round, and the win rates against the previous round and the initial policy."""
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4))
    rounds = [e["round"] for e in entries]
    left.plot(rounds, [e["reward"] for e in entries], "o-")
    left.set_ylabel("mean reward (held-out answers)")
    later = entries[1:]
    right.plot(
        [e["round"] for e in later], [100 * e["win_rate"] for e in later], "o-", label="vs previous round"
    )
    right.plot(
        [e["round"] for e in later],
        [100 * e["win_rate_vs_initial"] for e in later],
        "s--",
        label="vs initial",
    )
    right.axhline(50, color="grey", linewidth=0.8)
    right.set_ylabel("win rate judged by the reward model (%)")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle("Iterative RLHF: each round's policy on held-out prompts")
    fig.tight_layout()
    return save_png(fig, dst)


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON at ``path``, atomically."""
    write_atomically(
        path, lambda f: f.write((json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())
    )
