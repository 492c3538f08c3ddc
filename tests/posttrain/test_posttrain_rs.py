"""Rejection sampling (Llama 2 §3.2.3): best-of-K targets, pooling over rounds, summaries, resuming, bad input.

A tiny random policy and a tiny random reward model share a small real
tokenizer (the SentencePiece model of tests/posttrain/conftest.py, Llama 2's
chat format), so a run takes seconds. The references are independent of the
module: the reward model scoring one unpadded conversation rendered here, the
engine's plain batched generation with each prompt repeated K times, and the
summary's numbers recomputed from samples.jsonl.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import load_model, model_tensors
from herd.cli import main
from herd.config import from_dict
from herd.errors import ConfigError, InputError
from herd.infer import Engine, SamplingParams, generate_ids
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.posttrain.config import resolve_init
from herd.posttrain.data import read_conversations
from herd.posttrain.rejection_sampling import (
    PROGRESS,
    ROUND_SEED_STRIDE,
    RSConfig,
    best_sample,
    load_rs_config,
    rejection_sample,
    score_conversations,
    score_responses,
)
from herd.posttrain.reward_model import RewardModel
from herd.tokenizer import Tokenizer, load_tokenizer
from herd.tokenizer.chat import Llama2Chat
from herd.tokenizer.save import save_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    {"prompt": "Can computers fall in love?"},
    {"messages": [{"role": "user", "content": "Name a colour."}]},
    {"prompt": "What is a parser?", "system": "Answer briefly."},
    {"chosen": "a preference row without a prompt is skipped", "rejected": "x"},
    "not an object",
    {"prompt": "Why do programs need arguments?"},
    {"prompt": "Tell me about help messages."},
    {"prompt": "What is a subcommand?"},
]
USABLE = 6
FILES = ("progress.jsonl", "sft.jsonl", "samples.jsonl", "summary.json", "reward_vs_k.png", "report.md")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, llama2_tokenizer: Tokenizer) -> dict[str, Path]:
    """A tiny policy (HF directory with the tokenizer), a reward model over its vocabulary, one over another, prompts."""
    root = tmp_path_factory.mktemp("rs")
    config = get_preset("llama2-tiny").replace(vocab_size=llama2_tokenizer.vocab_size)
    policy = build_model(config, seed=0)
    policy.init_weights(std=0.1, seed=0)
    with (
        torch.no_grad()
    ):  # EOS likely in some contexts: answers that stop (at different lengths) and answers cut off
        policy.output.weight[llama2_tokenizer.eos_id] *= 10
    write_hf(root / "policy", CheckpointInfo(config), model_tensors(policy))
    save_tokenizer(llama2_tokenizer, root / "policy")
    # pad id = EOS, the token every rendered answer ends with: scoring must read explicit positions
    rm = RewardModel.random(config, seed=1, pad_id=llama2_tokenizer.eos_id)
    rm.save_pretrained(root / "rm", tokenizer=llama2_tokenizer)
    other = RewardModel.random(config.replace(vocab_size=config.vocab_size + 8), seed=1, pad_id=0)
    other.save_pretrained(root / "rm-other-vocab")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in PROMPTS), encoding="utf-8")
    return {
        "root": root,
        "policy": root / "policy",
        "rm": root / "rm",
        "other": root / "rm-other-vocab",
        "prompts": prompts,
    }


def rs_config(models: dict[str, Path], output: Path, **changes: object) -> RSConfig:
    base = RSConfig(
        policy=str(models["policy"]),
        reward_model=str(models["rm"]),
        prompts=str(models["prompts"]),
        output=str(output),
        samples=4,
        temperatures=[1.2, 1.0],
        max_new_tokens=10,
        batch_prompts=4,
        seed=7,
    )
    return replace(base, **changes).validate()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run(models: dict[str, Path]) -> Path:
    """An uninterrupted two-round run over the six usable prompts (two batches per round)."""
    out = models["root"] / "full"
    result = rejection_sample(rs_config(models, out), progress=False)
    assert result.complete and result.prompts == USABLE and result.batches_run == 4
    assert result.samples_drawn == 2 * USABLE * 4
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_round_and_prompt(out: Path) -> dict[tuple[int, int], list[dict]]:
    found: dict[tuple[int, int], list[dict]] = {}
    for row in read_jsonl(out / "samples.jsonl"):
        found.setdefault((row["round"], row["prompt_index"]), []).append(row)
    return found


def test_samples_depend_only_on_seed_round_and_prompt(
    run: Path, models: dict[str, Path], llama2_tokenizer: Tokenizer
) -> None:
    """Sample j of prompt i in round r is row i·K + j of one plain batch of all prompts, each repeated K times,
    seeded seed + r·2³²: the run's batches of 4 prompts (one prefill each) do not change it."""
    samples = by_round_and_prompt(run)
    assert len(samples) == 2 * USABLE and all(len(rows) == 4 for rows in samples.values())
    fmt = Llama2Chat(llama2_tokenizer)
    model = load_model(models["policy"])
    prompts = [fmt.render_prompt(samples[(0, i)][0]["messages"]) for i in range(USABLE)]
    for round_, temperature in enumerate([1.2, 1.0]):
        sampling = SamplingParams(temperature=temperature, seed=7 + round_ * ROUND_SEED_STRIDE)
        repeated = [ids for ids in prompts for _ in range(4)]
        reference = generate_ids(
            Engine(model), repeated, max_new_tokens=10, sampling=sampling, stop_ids=llama2_tokenizer.stop_ids
        )
        rows = [row for i in range(USABLE) for row in samples[(round_, i)]]
        assert [row["sample"] for row in rows] == [0, 1, 2, 3] * USABLE
        for row, ref in zip(rows, reference, strict=True):
            tokens = ref.token_ids[:-1] if ref.finish_reason == "stop" else ref.token_ids
            assert row["response"] == llama2_tokenizer.decode(tokens).strip()
            assert (row["tokens"], row["finish_reason"]) == (len(ref.token_ids), ref.finish_reason)
    assert {row["finish_reason"] for rows in samples.values() for row in rows} == {"stop", "length"}


@torch.no_grad()
def test_best_of_k_is_the_argmax_of_the_reward_models_scores(
    run: Path, models: dict[str, Path], llama2_tokenizer: Tokenizer
) -> None:
    rm = RewardModel.from_pretrained(models["rm"]).eval()
    fmt = Llama2Chat(llama2_tokenizer)
    samples = by_round_and_prompt(run)
    sft = read_jsonl(run / "sft.jsonl")
    assert [row["prompt_index"] for row in sft] == list(range(USABLE))
    for row in sft:
        i = row["prompt_index"]
        pooled = samples[(0, i)] + samples[(1, i)]
        best = max((s for s in pooled if s["response"]), key=lambda s: s["reward"])
        assert row["messages"] == [*best["messages"], {"role": "assistant", "content": best["response"]}]
        assert (row["reward"], row["round"]) == (best["reward"], best["round"])
        # the recorded reward is the RM's score of the conversation alone (unpadded, read at its last token)
        ids = fmt.render(row["messages"]).ids
        alone = rm(torch.tensor([ids]), torch.tensor([len(ids) - 1])).item()
        assert row["reward"] == pytest.approx(alone, abs=1e-5)
    assert samples[(0, 2)][0]["messages"][0] == {"role": "system", "content": "Answer briefly."}
    # herd sft reads the targets unchanged
    assert [c.messages for c in read_conversations(run / "sft.jsonl")] == [
        tuple(row["messages"]) for row in sft
    ]


def test_pooling_keeps_an_earlier_rounds_better_sample(run: Path) -> None:
    samples = by_round_and_prompt(run)
    sft = {row["prompt_index"]: row for row in read_jsonl(run / "sft.jsonl")}
    first_round_better = [
        i
        for i in range(USABLE)
        if max(s["reward"] for s in samples[(0, i)]) > max(s["reward"] for s in samples[(1, i)])
    ]
    assert first_round_better, "the seed should give a prompt whose first round did better"
    for i in first_round_better:
        assert sft[i]["round"] == 0
    summary = json.loads((run / "summary.json").read_text())
    assert [r["targets"] for r in summary["rounds"]] == [
        sum(1 for row in sft.values() if row["round"] == r) for r in (0, 1)
    ]
    # by hand: an empty answer is never a target, a tie keeps the earliest
    rounds = [
        [[{"response": "a", "reward": 0.5}, {"response": "", "reward": 0.9}]],
        [[{"response": "b", "reward": 0.5}, {"response": "c", "reward": 0.2}]],
    ]
    assert best_sample(rounds, 0) == (0, {"response": "a", "reward": 0.5})
    rounds[1][0][1]["reward"] = 0.7
    assert best_sample(rounds, 0) == (1, {"response": "c", "reward": 0.7})


def test_summary_numbers_equal_hand_computations_from_samples_jsonl(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    samples = by_round_and_prompt(run)
    rewards = {key: [s["reward"] for s in rows] for key, rows in samples.items()}
    sft = read_jsonl(run / "sft.jsonl")
    assert summary["prompts"] == USABLE and summary["sft_rows"] == len(sft) == USABLE
    assert summary["mean_best_reward"] == pytest.approx(sum(r["reward"] for r in sft) / USABLE, abs=1e-12)
    medians = [statistics.median(rewards[(0, i)] + rewards[(1, i)]) for i in range(USABLE)]
    assert summary["mean_median_reward"] == pytest.approx(sum(medians) / USABLE, abs=1e-12)
    for r, stats in enumerate(summary["rounds"]):
        best = [max(rewards[(r, i)]) for i in range(USABLE)]
        median = [statistics.median(rewards[(r, i)]) for i in range(USABLE)]
        assert stats["mean_best_reward"] == pytest.approx(sum(best) / USABLE, abs=1e-12)
        assert stats["mean_median_reward"] == pytest.approx(sum(median) / USABLE, abs=1e-12)
        curve = summary["reward_vs_k"][r]
        assert curve["k"] == [1, 2, 3, 4]
        for k in range(1, 5):
            top = [max(rewards[(r, i)][:k]) for i in range(USABLE)]
            mid = [statistics.median(rewards[(r, i)][:k]) for i in range(USABLE)]
            assert curve["max"][k - 1] == pytest.approx(sum(top) / USABLE, abs=1e-12)
            assert curve["median"][k - 1] == pytest.approx(sum(mid) / USABLE, abs=1e-12)
        assert curve["max"] == sorted(curve["max"])  # the best of more samples is never worse
        assert curve["max"][0] == curve["median"][0]
    pooled = [max(rewards[(0, i)] + rewards[(1, i)]) for i in range(USABLE)]
    assert summary["rounds"][1]["mean_pooled_best_reward"] == pytest.approx(sum(pooled) / USABLE, abs=1e-12)
    assert (run / "reward_vs_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run / "report.md").read_text()
    assert "![reward against k](reward_vs_k.png)" in report and "| 2 | 1 |" in report


def test_a_stopped_run_resumes_to_the_same_files(run: Path, models: dict[str, Path]) -> None:
    out = models["root"] / "resumed"
    config = rs_config(models, out)
    first = rejection_sample(config, progress=False, stop_after_batches=1)
    assert not first.complete and first.batches_run == 1
    assert sorted(p.name for p in out.iterdir()) == [PROGRESS]  # only the progress so far
    with open(out / PROGRESS, "ab") as f:  # killed in the middle of writing the next batch
        f.write(b'{"round": 0, "start": 4, "prompts": [{"ind')
    second = rejection_sample(config, progress=False, stop_after_batches=2)
    assert (second.batches_done_before, second.batches_run, second.complete) == (1, 2, False)
    third = rejection_sample(config, progress=False)
    assert (third.batches_done_before, third.batches_run, third.complete) == (3, 1, True)
    for name in FILES:
        assert (out / name).read_bytes() == (run / name).read_bytes(), name
    again = rejection_sample(config, progress=False)  # a finished run: nothing to sample, the same files
    assert again.batches_run == 0 and again.complete
    assert (out / "sft.jsonl").read_bytes() == (run / "sft.jsonl").read_bytes()


def test_a_progress_file_of_other_settings_is_refused(run: Path, models: dict[str, Path]) -> None:
    before = (run / PROGRESS).read_bytes()
    with pytest.raises(
        ConfigError, match=r"progress.jsonl: holds a run with other settings \(samples 4 there, 8 here\)"
    ):
        rejection_sample(rs_config(models, run, samples=8), progress=False)
    assert (run / PROGRESS).read_bytes() == before


def test_no_usable_prompt_is_one_error_and_writes_nothing(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "assistant", "content": "no question"}]}\nnot json\n')
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"bad.jsonl: no usable rows") as caught:
        rejection_sample(rs_config(models, out, prompts=str(bad)), progress=False)
    assert "\n" not in str(caught.value)
    # prompts that all leave no room for the answer
    with pytest.raises(
        InputError,
        match=r"prompts.jsonl: no usable prompts \(8 skipped \(6 too long, 1 'prompt' missing, 1 not an object\)\)",
    ):
        rejection_sample(rs_config(models, out, max_new_tokens=250), progress=False)
    assert not out.exists()


def test_a_reward_model_over_another_vocabulary_is_refused(
    models: dict[str, Path], tmp_path: Path, llama3_tokenizer: Tokenizer
) -> None:
    out = tmp_path / "out"
    with pytest.raises(
        ConfigError,
        match=r"reward_model: .*rm-other-vocab has a vocabulary of 508 tokens but the policy .* has 500",
    ):
        rejection_sample(rs_config(models, out, reward_model=str(models["other"])), progress=False)
    # the same size, another tokenizer saved with it
    rm = RewardModel.from_pretrained(models["rm"])
    rm.save_pretrained(tmp_path / "rm-llama3-tok", tokenizer=llama3_tokenizer)
    with pytest.raises(
        ConfigError, match=r"the tokenizer saved in .*rm-llama3-tok differs from the policy's"
    ):
        rejection_sample(rs_config(models, out, reward_model=str(tmp_path / "rm-llama3-tok")), progress=False)
    assert not out.exists()


def test_config_keys_overrides_and_checks(tmp_path: Path) -> None:
    toml = tmp_path / "rs.toml"
    toml.write_text('policy = "p"\nreward_model = "r"\nprompts = "x.jsonl"\nsamples = 8\n')
    config = load_rs_config(toml, ["temperatures=[1.2, 1.3]", "limit=3"], output=tmp_path / "o")
    assert (config.samples, config.temperatures, config.limit, config.output) == (
        8,
        [1.2, 1.3],
        3,
        str(tmp_path / "o"),
    )
    assert RSConfig().samples == 10 and RSConfig().temperatures == [1.2]
    with pytest.raises(ConfigError, match="unknown config key"):
        load_rs_config(toml, ["temperature=1.2"])
    with pytest.raises(ConfigError, match="top_p must be in"):
        load_rs_config(toml, ["top_p=0"])
    with pytest.raises(ConfigError, match="temperatures must hold one temperature per round"):
        load_rs_config(toml, ["temperatures=[]"])
    with pytest.raises(ConfigError, match="reward_model must name"):
        from_dict(RSConfig, {"policy": "p", "prompts": "x"}).validate()


def test_the_demo_config_reads_the_bundled_policy_and_sample_prompts(smollm2_gguf: Path) -> None:
    config = load_rs_config(ROOT / "configs/posttrain/rs-demo.toml")
    assert resolve_init(config.policy, "policy") == smollm2_gguf
    assert config.temperatures == [1.2] and 4 <= config.samples <= 8 and config.limit > 0
    assert (ROOT / config.prompts).is_file() and load_tokenizer(smollm2_gguf).vocab_size == 49152


def test_the_command_module_imports_no_torch() -> None:
    code = "import sys, herd.cli.posttrain; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def write_toml(path: Path, models: dict[str, Path], **changes: object) -> Path:
    values = {
        "policy": str(models["policy"]),
        "reward_model": str(models["rm"]),
        "prompts": str(models["prompts"]),
        "samples": 4,
        "temperatures": [1.2, 1.0],
        "max_new_tokens": 10,
        "batch_prompts": 4,
        "seed": 7,
        **changes,
    }
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()))
    return path


def test_the_command_writes_what_the_library_writes(
    run: Path,
    models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = write_toml(tmp_path / "rs.toml", models, samples=2, limit=1)
    out = tmp_path / "out"
    threads = str(torch.get_num_threads())  # the same kernels' threads as the library run's
    args = ["rs", str(toml), "-o", str(out), "--set", "samples=4", "--set", "limit=0", "--threads", threads]
    assert main([*args, "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["complete"] and printed["samples_drawn"] == 2 * USABLE * 4
    assert printed["output"] == str(out) and printed["summary"]["sft_rows"] == USABLE
    for name in FILES:
        assert (out / name).read_bytes() == (run / name).read_bytes(), name
    assert main(args) == 0  # again: nothing left to sample, a summary for people
    text = capsys.readouterr().out
    assert "round 2 (T 1)" in text and "0 samples" in text and "SFT targets" in text


def test_the_command_reports_bad_input_in_one_line_with_exit_2(
    models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    toml = write_toml(tmp_path / "rs.toml", models, reward_model=str(models["other"]))
    assert main(["rs", str(toml), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("herd: error: reward_model: ") and err.count("\n") == 1
    bad = tmp_path / "empty.jsonl"
    bad.write_text("\n")
    assert main(["rs", str(toml), "-o", str(out), "--set", f"prompts={json.dumps(str(bad))}"]) == 2
    assert capsys.readouterr().err == f"herd: error: {bad}: no rows (empty file)\n"
    assert main(["rs", str(toml), "--set", "sample=3"]) == 2
    assert capsys.readouterr().err == "herd: error: unknown config key(s): sample\n"
    assert not out.exists()


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rs", "--help"])
    assert exited.value.code == 0
    assert "herd rs configs/posttrain/rs-demo.toml" in capsys.readouterr().out


def test_scores_do_not_depend_on_the_batch(llama2_tokenizer: Tokenizer) -> None:
    """score_conversations in batches of 1, 3 and 8 (rows of different lengths, right-padded) gives each
    conversation the score it gets alone, to 1e-5; score_responses is the same for one prompt's answers."""
    config = get_preset("llama2-tiny").replace(vocab_size=llama2_tokenizer.vocab_size)
    rm = RewardModel.random(config, seed=2, pad_id=llama2_tokenizer.eos_id).eval()
    fmt = Llama2Chat(llama2_tokenizer)
    prompts = [[{"role": "user", "content": f"Question {i}: {'why ' * i}?"}] for i in range(4)]
    conversations = [(m, answer) for m in prompts for answer in ("Yes.", "Because the sky is blue and wide.")]
    with torch.no_grad():
        alone = [score_conversations(rm, fmt, [c], batch_size=1)[0] for c in conversations]
        for size in (3, 8):
            assert score_conversations(rm, fmt, conversations, batch_size=size) == pytest.approx(
                alone, abs=1e-5
            )
        answers = [answer for _, answer in conversations[:2]]
        assert score_responses(rm, fmt, prompts[0], answers) == pytest.approx(alone[:2], abs=1e-5)
