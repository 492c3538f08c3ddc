"""Post-training commands: ``herd sft`` (Llama 2 §3.1 supervised fine-tuning), ``herd average`` (Llama 3 §4.1.5 model averaging),
``herd rs`` (Llama 2 §3.2.3 rejection sampling), ``herd rm`` (Llama 2 §3.2.2 reward models), ``herd dpo``
(Llama 3 §4.1.4 direct preference optimisation), ``herd ppo`` (Llama 2 §3.2.3 RLHF), ``herd rlhf`` (Llama 2 §3.2.3's
iterative rounds of rejection sampling and PPO), ``herd gatt`` (Llama 2 §3.3 Ghost Attention).

The library code is :mod:`herd.posttrain`; it is imported when a command runs,
so building the command tree imports no PyTorch.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from herd.argtypes import non_negative_float, non_negative_int, positive_int
from herd.cli.flags import add_dtype, add_json, add_output, add_quiet, add_set, add_threads, apply_threads
from herd.cli.runs import add_run_flags, optional, run_rows, run_training
from herd.cli.text import print_rows
from herd.errors import ConfigError

if TYPE_CHECKING:
    from herd.model.transformer import Transformer
    from herd.posttrain.dpo import DPOResult
    from herd.posttrain.gatt import Following
    from herd.posttrain.ppo import PPOResult
    from herd.posttrain.rejection_sampling import RSResult
    from herd.posttrain.rlhf import RLHFResult
    from herd.posttrain.rm import RMResult
    from herd.posttrain.sft import SFTResult
    from herd.tokenizer.chat import ChatFormat


def weight_list(text: str) -> list[float]:
    """``0.25,0.75`` → ``[0.25, 0.75]``: comma-separated finite numbers ≥ 0 (``--weights``)."""
    return [non_negative_float(part.strip()) for part in text.split(",")]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd average OUT IN1 IN2 ... [--weights W1,W2,...] [--dtype D] [--force]``."""
    p = sub.add_parser(
        "average",
        help="average checkpoints of one architecture (Llama 3 model averaging)",
        description="Write to OUT the weighted average of the checkpoints IN1 IN2 ..., tensor by tensor, "
        "as Llama 3 averages the models of runs with different data or hyperparameters at each reward "
        "model, SFT or DPO stage (Llama 3 §4.1.5). Inputs may be in any layout herd reads (Hugging Face "
        "dir, Meta dir, GGUF file, mixed); reward models (LlamaForSequenceClassification dirs) average "
        "into a reward model. Every input must have the same architecture, tensors and shapes, or "
        "nothing is written. OUT is a Hugging Face directory with the first input's tokenizer; it is "
        "the first positional argument, followed by the inputs. An existing OUT is replaced only with "
        "--force, and only if herd wrote it.",
        epilog="examples:\n  herd average runs/avg/mean runs/avg/a runs/avg/b\n"
        "  herd average runs/avg/mean runs/avg/a runs/avg/b --weights 0.25,0.75 --dtype bf16 --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", metavar="OUT", help="output directory (Hugging Face layout)")
    p.add_argument("inputs", metavar="IN", nargs="+", help="checkpoints to average (two or more)")
    p.add_argument(
        "--weights",
        type=weight_list,
        metavar="W1,W2,...",
        help="one weight per input, comma-separated, normalised to sum 1 (default: equal weights)",
    )
    add_dtype(p, "weight dtype of the output (default: the first input's)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is an earlier herd output")
    add_quiet(p)
    add_json(p, "the inputs, their normalised weights, the output and the dtype")
    p.set_defaults(func=run_average)
    register_sft(sub)
    register_rs(sub)
    register_rm(sub)
    register_dpo(sub)
    register_ppo(sub)
    register_rlhf(sub)
    register_gatt(sub)


def register_training(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    epilog: str,
    set_example: str,
    print_config: str,
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add a training command ``herd NAME CONFIG`` with the flags every training command has (:func:`add_run_flags`)."""
    p = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(p, set_example=set_example, print_config=print_config)
    p.set_defaults(func=run)


def register_sft(sub: argparse._SubParsersAction) -> None:
    """Add ``herd sft CONFIG`` with the flags every training command has (:func:`herd.cli.runs.add_run_flags`)."""
    register_training(
        sub,
        "sft",
        help="supervised fine-tuning on chat conversations (Llama 2 SFT)",
        description="Fine-tune the checkpoint `init` of a TOML config (configs/posttrain/*-sft.toml) on chat "
        "conversations (JSONL rows {messages: [{role, content}, ...]}), with the loss on the assistant's "
        "answers only (Llama 2 §3.1, Llama 3 §4.1.3), on the pretraining trainer: checkpoints, --resume, "
        "metrics.jsonl, the loss plot and summary.json go to the run directory (out_dir), the fine-tuned "
        "weights with their tokenizer to OUT/final (Hugging Face layout). Rows that cannot be used are "
        "skipped and counted by reason.",
        epilog="examples:\n  herd sft configs/posttrain/sft-demo.toml -o runs/sft --set train.steps=4\n"
        "  herd sft configs/posttrain/sft-demo.toml -o runs/sft --resume --set train.steps=8\n"
        "  herd sft configs/posttrain/llama3-sft.toml --set init=path/to/model --print-config",
        set_example="--set train.steps=20 --set optim.lr=1e-5",
        print_config="train.steps 0: data.epochs passes over the packed data",
        run=run_sft,
    )


def register_rs(sub: argparse._SubParsersAction) -> None:
    """Add ``herd rs CONFIG [-o DIR] [--set KEY=VALUE] [--threads N] [--json] [--quiet]``."""
    p = sub.add_parser(
        "rs",
        help="rejection sampling: the reward model's best of K answers per prompt as SFT data (Llama 2)",
        description="Draw K answers to every prompt of a TOML config's `prompts` file from the `policy` model "
        "(each prompt prefilled once for its K samples), score each answer with the `reward_model`, and keep "
        "the best as a supervised fine-tuning example (Llama 2 §3.2.3, Llama 3 §4.2.2). `temperatures` "
        "holds one temperature per round; a prompt's target is its best answer over all rounds, as Llama 2 "
        "pooled its iterations. Writes DIR/sft.jsonl (read by herd sft), samples.jsonl, summary.json, "
        "reward_vs_k.png (the best and median reward of the first k samples, Llama 2 Figure 7) and report.md. "
        "Progress is kept per batch of prompts in DIR/progress.jsonl: running the same command again after "
        "an interruption continues where it stopped and writes the same files.",
        epilog="examples:\n  herd rs configs/posttrain/rs-demo.toml\n"
        "  herd rs configs/posttrain/rs-demo.toml -o runs/posttrain/rs-k8 --set samples=8 "
        "--set 'temperatures=[1.2, 1.3]'\n"
        "  herd rs configs/posttrain/rs-demo.toml --threads 2 --json --quiet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="TOML config file (configs/posttrain/rs-demo.toml)")
    add_output(p, "output directory (overrides the config's output)", required=False)
    add_set(p, "--set samples=8 --set limit=10")
    add_threads(p)
    add_quiet(p)
    add_json(p, "the run's figures and summary")
    p.set_defaults(func=run_rs)


def register_rm(sub: argparse._SubParsersAction) -> None:
    """Add ``herd rm CONFIG`` with the flags every training command has (:func:`herd.cli.runs.add_run_flags`)."""
    register_training(
        sub,
        "rm",
        help="train a reward model on preference pairs (Llama 2 reward models)",
        description="Train a reward model from the checkpoint `init` of a TOML config "
        "(configs/posttrain/*rm*.toml): its next-token head is replaced by a scalar head, trained on "
        "preference rows (JSONL {prompt, chosen, rejected, rating?, safety?}, or {prompt, responses: "
        "[best, ..., worst]}) with the loss -log sigmoid(r_chosen - r_rejected - margin) (Llama 2 §3.2.2; "
        "margin none: Llama 3 §4.1.2), on the pretraining trainer: checkpoints, --resume, metrics.jsonl, "
        "the loss plot, scores.png and summary.json go to the run directory (out_dir), the reward model "
        "with its tokenizer to OUT/final (LlamaForSequenceClassification, which transformers loads). The "
        "held-out accuracy is reported before and after training, per preference rating (Llama 2 Table 8). "
        "Rows that cannot be used are skipped and counted by reason.",
        epilog="examples:\n  herd rm configs/posttrain/rm-demo.toml -o runs/rm\n"
        "  herd rm configs/posttrain/rm-demo.toml -o runs/rm --resume --set train.steps=6\n"
        "  herd rm configs/posttrain/llama2-rm-safety.toml --set init=path/to/chat-model --print-config",
        set_example="--set margin=large --set data.max_pairs=64",
        print_config="train.steps 0: data.epochs passes over the preference rows",
        run=run_rm,
    )


def register_dpo(sub: argparse._SubParsersAction) -> None:
    """Add ``herd dpo CONFIG`` with the flags every training command has (:func:`herd.cli.runs.add_run_flags`)."""
    register_training(
        sub,
        "dpo",
        help="direct preference optimisation on preference pairs (Llama 3 DPO)",
        description="Train the checkpoint `init` of a TOML config (configs/posttrain/*dpo*.toml) with DPO on "
        "preference rows (JSONL {prompt | messages, chosen, rejected}, or {prompt, responses: [best, ..., "
        "worst]}): -log sigmoid(beta ((log pi - log ref) of chosen - (log pi - log ref) of rejected)), with "
        "variant llama3 (the default) masking header and end-of-turn tokens out of both and adding 0.2 x the "
        "chosen response's NLL (Llama 3 §4.1.4). The reference log-probabilities are computed once before "
        "training and kept in OUT/reference_logps.safetensors (a resumed run reads them back); no second "
        "model is held. Runs on the pretraining trainer: checkpoints, --resume, metrics.jsonl, the loss plot "
        "and summary.json (held-out reward accuracy and margin before and after) go to the run directory "
        "(out_dir), the trained weights with their tokenizer to OUT/final (Hugging Face layout). Rows that "
        "cannot be used are skipped and counted by reason.",
        epilog="examples:\n  herd dpo configs/posttrain/dpo-demo.toml -o runs/dpo\n"
        "  herd dpo configs/posttrain/dpo-demo.toml -o runs/dpo --resume --set train.steps=8\n"
        "  herd dpo configs/posttrain/llama3-dpo.toml --set init=path/to/sft-model --print-config",
        set_example="--set beta=0.1 --set variant=standard --set data.max_pairs=64",
        print_config="train.steps 0: data.epochs passes over the pairs",
        run=run_dpo,
    )


def register_ppo(sub: argparse._SubParsersAction) -> None:
    """Add ``herd ppo CONFIG`` with the flags every training command has (:func:`herd.cli.runs.add_run_flags`)."""
    register_training(
        sub,
        "ppo",
        help="PPO of a chat model against reward models (Llama 2 RLHF)",
        description="Train the checkpoint `init` of a TOML config (configs/posttrain/*ppo*.toml) with PPO "
        "(Llama 2 §3.2.3) on the prompts of data.train (JSONL {prompt | messages, safety?}): each rollout "
        "samples `samples` answers per prompt through herd's batched KV-cache engine with the current policy, "
        "scores them with the reward model (the safety one for safety-tagged prompts or a safety score below "
        "0.15), whitens logit(score), subtracts beta x the per-token KL to the initial model, and computes "
        "advantages (advantage gae: GAE with a value model started from the reward model; group: each "
        "answer against its prompt's other answers, beyond the paper); then ppo_epochs passes of clipped "
        "policy and value updates over mini-batches, one step each. Runs on the pretraining trainer: "
        "checkpoints (exact at rollout boundaries), --resume, metrics.jsonl, the loss plot and summary.json "
        "(held-out score, KL and share of ended answers before and after) go to the run directory "
        "(out_dir), the policy with its tokenizer to OUT/final (Hugging Face layout). One process only "
        "for now.",
        epilog="examples:\n  herd rm configs/posttrain/rm-demo.toml -o runs/rm   # the reward model first\n"
        "  herd ppo configs/posttrain/ppo-demo.toml -o runs/ppo\n"
        "  herd ppo configs/posttrain/llama2-ppo.toml --set init=path/to/sft-model --print-config",
        set_example="--set beta=0.01 --set advantage=group --set samples=4",
        print_config="train.steps 0: data.epochs passes over the prompts",
        run=run_ppo,
    )


def register_rlhf(sub: argparse._SubParsersAction) -> None:
    """Add ``herd rlhf CONFIG`` with the flags every training command has (:func:`herd.cli.runs.add_run_flags`)."""
    register_training(
        sub,
        "rlhf",
        help="iterative RLHF: rounds of rejection sampling, SFT and PPO, each from the last (Llama 2 RLHF-V1..V5)",
        description="Run the rounds of a TOML config (configs/posttrain/llama2-chat.toml, rlhf-demo.toml) as Llama "
        "2 ran RLHF-V1 to V5 (§3.2.3): each [[round]] runs its stages in order, rs (herd rs with the round's "
        "policy and the reward_model), sft (herd sft from the round's policy on the rs stage's best answers, "
        "or with pool = true the best per prompt of all rounds so far, as Llama 2 did from RLHF-V3 on) "
        "and ppo (herd ppo from the round's SFT model), each from its own config file with the round's "
        "overrides; the round's last final/ directory is the next round's policy. After each round, one answer "
        "per held-out prompt (eval.prompts) is sampled and scored by the reward model: OUT/round_K/report.md "
        "and OUT/rounds.json give the mean reward, the win rate against the previous round's answers (ties "
        "half), the KL to the initial policy per token and the answer length; OUT/summary.md and "
        "OUT/rounds.png gather the rounds. With --resume, finished stages are skipped and an interrupted one "
        "continues from its checkpoint or progress file.",
        epilog="examples:\n  herd rm configs/posttrain/rm-demo.toml -o runs/rm   # the reward model first\n"
        "  herd rlhf configs/posttrain/rlhf-demo.toml -o runs/rlhf\n"
        "  herd rlhf configs/posttrain/rlhf-demo.toml -o runs/rlhf --resume\n"
        "  herd rlhf configs/posttrain/llama2-chat.toml --set init=path/to/sft-model --print-config",
        set_example='--set eval.max_prompts=8 --set \'round[1].stages=["rs", "sft", "ppo"]\'',
        print_config='with each round\'s resolved stage configs under "rounds"',
        run=run_rlhf,
    )


# Defaults of herd.posttrain.gatt's build_gatt_dialogues and instruction_following, written out so that
# building the parser imports no PyTorch; tests/cli/test_cli_gatt.py checks they are the library's.
GATT_BUILD_DEFAULTS = {"max_new_tokens": 256, "temperature": 1.0, "top_p": 1.0, "batch_size": 8, "seed": 0}
GATT_EVAL_DEFAULTS = {"max_new_tokens": 64, "temperature": 0.0, "batch_size": 8, "seed": 0}
# What herd gatt build (the rows, the progress) and herd gatt eval (the shares, the plot) write into OUT.
GATT_ROWS, GATT_PROGRESS = "gatt.jsonl", "progress.jsonl"
FOLLOWING_JSON, FOLLOWING_PNG = "following.json", "following.png"
# herd.posttrain.gatt.CATEGORIES, for --categories' choices (checked against the library by the tests).
GATT_CATEGORIES = ("hobby", "language", "figure", "ending", "length", "case")


def model_spec(text: str) -> tuple[str, str]:
    """``LABEL=MODEL`` (``herd gatt eval --model``) → ``(LABEL, MODEL)``: the plot's name for a model, and the model."""
    label, sep, model = text.partition("=")
    if not sep or not label.strip() or not model:
        raise argparse.ArgumentTypeError(f"expected LABEL=MODEL, got {text!r}")
    return label.strip(), model


def register_gatt(sub: argparse._SubParsersAction) -> None:
    """Add ``herd gatt build OUT --policy MODEL --dialogues FILE ...`` and ``herd gatt eval OUT --model LABEL=MODEL ...``."""
    p = sub.add_parser(
        "gatt",
        help="Ghost Attention: multi-turn SFT data that keeps a first-turn instruction in force (Llama 2)",
        description="Ghost Attention (Llama 2 §3.3): `build` makes fine-tuning rows that teach a chat model to "
        'keep an instruction given in the first turn ("act as Napoleon", "always answer in French") '
        "for the whole dialogue; `eval` measures, turn by turn, how often a model's answers still follow it.",
        epilog="examples:\n"
        "  herd gatt build runs/gatt --policy smollm2-135m-instruct "
        "--dialogues data/samples/posttrain/sft-train.jsonl --limit 8\n"
        "  herd gatt eval runs/gatt --model before=smollm2-135m-instruct --model after=runs/sft/final "
        "--dialogues data/samples/posttrain/sft-val.jsonl --limit 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="gatt_command", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="sample GAtt's fine-tuning rows from a chat model",
        description="Give each multi-turn conversation of FILE (its user turns; the answers are dropped) an "
        "instruction drawn from herd's hobby, language, public-figure and format lists, concatenate it to "
        "every user turn and sample every answer from the chat model MODEL, turn by turn, each answer the "
        "context of the next (Llama 2 §3.3). Each dialogue becomes one row of OUT/gatt.jsonl with the "
        "instruction in its first turn only (the system message, or with --placement user the first user "
        "message; in its short form half of the time) and every answer but the last with weight 0: herd sft "
        "reads the file as it is and trains on the last answers. Each batch's answers are kept in "
        "OUT/progress.jsonl: running the same command again after an interruption continues where it "
        "stopped and writes the same rows.",
        epilog="examples:\n"
        "  herd gatt build runs/gatt --policy smollm2-135m-instruct "
        "--dialogues data/samples/posttrain/sft-train.jsonl --limit 8\n"
        "  herd gatt build runs/gatt-user --policy path/to/chat-model --dialogues chats.jsonl "
        "--placement user --temperature 0.7 --top-p 0.9 --threads 2 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument(
        "output", metavar="OUT", type=Path, help="output directory: gatt.jsonl and progress.jsonl"
    )
    build.add_argument(
        "--policy",
        required=True,
        metavar="MODEL",
        help="the chat model that answers: a checkpoint (Hugging Face dir, Meta dir, GGUF file) or "
        "smollm2-135m-instruct",
    )
    add_gatt_input_flags(build, GATT_BUILD_DEFAULTS)
    build.add_argument(
        "--temperature",
        type=non_negative_float,
        default=GATT_BUILD_DEFAULTS["temperature"],
        help="sampling temperature (default %(default)s; the paper gives none)",
    )
    build.add_argument(
        "--top-p",
        type=float,
        default=GATT_BUILD_DEFAULTS["top_p"],
        help="nucleus sampling: the smallest set of tokens with this probability (default %(default)s: all)",
    )
    add_threads(build)
    add_json(build, "the rows written, the skipped dialogues and the instruction categories")
    build.set_defaults(func=run_gatt_build)

    evaluate = actions.add_parser(
        "eval",
        help="how often each model's answers follow a first-turn instruction, turn by turn",
        description="Give dialogue i of FILE the i-th of the instructions a program can check (a language, "
        "a closing question, at most 20 words, capital letters; in turn) in its first turn only, let each "
        "model answer every user turn with its own answers as the context (greedy by default), and check "
        "every answer (Llama 2 §3.3, Figure 9). Writes OUT/following.json (per model and turn, the share "
        "of the dialogues answered at that turn whose answer follows the instruction and how many were "
        "answered, plus every answer and check) and OUT/following.png (the shares against the turn, one "
        "line per model), and prints the shares per turn.",
        epilog="examples:\n"
        "  herd gatt eval runs/gatt --model before=smollm2-135m-instruct --model after=runs/sft/final "
        "--dialogues data/samples/posttrain/sft-val.jsonl --limit 8\n"
        "  herd gatt eval runs/gatt-eval --model smollm2=smollm2-135m-instruct "
        "--dialogues chats.jsonl --placement user --max-new-tokens 128 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "output", metavar="OUT", type=Path, help="output directory: following.json and following.png"
    )
    evaluate.add_argument(
        "--model",
        dest="models",
        type=model_spec,
        action="append",
        required=True,
        metavar="LABEL=MODEL",
        help="a model to evaluate and its label in the table and plot (repeatable); MODEL as for build's --policy",
    )
    add_gatt_input_flags(evaluate, GATT_EVAL_DEFAULTS)
    evaluate.add_argument(
        "--temperature",
        type=non_negative_float,
        default=GATT_EVAL_DEFAULTS["temperature"],
        help="sampling temperature (default %(default)s: greedy)",
    )
    add_threads(evaluate)
    add_json(evaluate, "the shares and counts per model and turn")
    evaluate.set_defaults(func=run_gatt_eval)


def add_gatt_input_flags(p: argparse.ArgumentParser, defaults: Mapping[str, float]) -> None:
    """The flags ``herd gatt build`` and ``eval`` share: which dialogues, where the instruction goes, batches, seed."""
    p.add_argument(
        "--dialogues",
        required=True,
        type=Path,
        metavar="FILE",
        help="conversations (JSONL or Parquet rows {messages: [{role, content}, ...]}); those with two or more "
        "user turns are used",
    )
    p.add_argument(
        "--limit",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="use the first N dialogues (default 0: all)",
    )
    p.add_argument(
        "--placement",
        choices=("system", "user"),
        default="system",
        help="where the first turn carries the instruction: the system message (default) or the first user message",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=defaults["max_new_tokens"],
        metavar="N",
        help="longest answer in tokens (default %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults["batch_size"],
        metavar="N",
        help="dialogues sampled together, turn by turn (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=defaults["seed"],
        help="seed of the instructions drawn and of the samples (default %(default)s)",
    )
    p.add_argument(
        "--categories",
        nargs="+",
        choices=GATT_CATEGORIES,
        default=[],
        metavar="CATEGORY",
        help=f"use only the instructions of these categories ({', '.join(GATT_CATEGORIES)}; default: all)",
    )


def run_average(args: argparse.Namespace) -> int:
    """Run ``herd average``: print where the average was written."""
    from herd.posttrain.average import average_checkpoints, normalised_weights

    weights = normalised_weights(args.weights, len(args.inputs))
    out = average_checkpoints(
        args.inputs, args.output, weights, args.dtype, force=args.force, progress=not args.quiet
    )
    if args.json:
        print(
            json.dumps({"inputs": args.inputs, "weights": weights, "output": str(out), "dtype": args.dtype})
        )
    else:
        print(f"wrote {out}")
    return 0


def run_sft(args: argparse.Namespace) -> int:
    """Run ``herd sft``: resolve the config, fine-tune, print the summary (or only print the config)."""
    from herd.posttrain.config import SFTConfig
    from herd.posttrain.sft import sft

    return run_training(args, SFTConfig, sft, sft_rows)


def sft_rows(result: SFTResult) -> list[tuple[str, object]]:
    """The summary of an SFT run: the trainer's rows, the eval loss, the data used and skipped, the weights."""
    used = ", ".join(f"{n:,} {name}" for name, n in result.conversations.items())
    data = [
        ("eval loss", f"{optional(result.eval_loss)} nats/answer token"),
        (
            "conversations",
            f"{used}; {result.packed_sequences:,} packed sequences, {result.epochs:.2f} epochs",
        ),
    ]
    data += skipped_rows(result.skipped_rows)
    weights = [
        ("weights (Hugging Face layout)", f"{result.final_dir}, with the tokenizer from {result.tokenizer}")
    ]
    return run_rows(result, data, weights if result.final_dir else [])


def skipped_rows(counts: dict[str, dict[str, int]], what: str = "rows") -> list[tuple[str, object]]:
    """One summary row per data file (``train``, ``val``): its skipped rows (or ``what``) by reason, or none."""
    from herd.posttrain.data import SkipCounts

    return [(f"skipped {what} ({name})", str(SkipCounts(c)) if c else "none") for name, c in counts.items()]


def run_rm(args: argparse.Namespace) -> int:
    """Run ``herd rm``: resolve the config, train the reward model, print the summary (or only print the config)."""
    from herd.posttrain.rm import RMConfig, train_rm

    return run_training(args, RMConfig, train_rm, rm_rows)


def percent(value: float | None) -> str:
    """An accuracy as a percentage with one decimal, or ``n/a``."""
    return f"{100 * value:.1f}%" if value is not None else "n/a"


def rm_rows(result: RMResult) -> list[tuple[str, object]]:
    """The summary of a reward-model run: the trainer's rows, the held-out loss and accuracy per rating
    (Llama 2 Table 8's layout, before → after training), the pairs used and skipped, the outputs."""
    from herd.posttrain.rm import LEVEL_NAMES

    held_out: list[tuple[str, object]] = [
        ("eval loss", f"{optional(result.eval_loss)} nats/pair (margin {result.margin})")
    ]
    if result.accuracy:
        held_out.append(("held-out accuracy", "before → after training (pairs)"))
        for level, row in result.accuracy.items():
            accuracy = f"{percent(row['before'])} → {percent(row['after'])} ({row['pairs']:,})"
            held_out.append((f"  {LEVEL_NAMES[level]}", accuracy))
    used = ", ".join(f"{n:,} {name}" for name, n in result.pairs.items())
    held_out += [("pairs", f"{used}; {result.epochs:.2f} epochs"), *skipped_rows(result.skipped_rows)]
    outputs: list[tuple[str, object]] = []
    if result.score_plot:
        outputs.append(("score histograms", result.score_plot))
    if result.final_dir:
        weights = f"{result.final_dir}, with the tokenizer from {result.tokenizer}; pad id {result.pad_id}"
        outputs.append(("reward model (LlamaForSequenceClassification)", weights))
    return run_rows(result, held_out, outputs)


def run_dpo(args: argparse.Namespace) -> int:
    """Run ``herd dpo``: resolve the config, train, print the summary (or only print the config)."""
    from herd.posttrain.dpo import DPOConfig, dpo

    return run_training(args, DPOConfig, dpo, dpo_rows)


def dpo_rows(result: DPOResult) -> list[tuple[str, object]]:
    """The summary of a DPO run: the trainer's rows, the held-out reward accuracy, margin and loss before →
    after training, the pairs used and skipped, the reference log-probabilities and the weights."""
    held_out: list[tuple[str, object]] = []
    if result.eval_loss is not None:
        val = result.pairs.get("val", 0)
        held_out += [
            (
                "held-out reward accuracy",
                f"{percent(result.eval_reward_accuracy_before)} → {percent(result.eval_reward_accuracy)} "
                f"({val:,} pairs; before: the initial model, every reward 0)",
            ),
            (
                "held-out reward margin",
                f"{optional(result.eval_reward_margin_before)} → {optional(result.eval_reward_margin)}",
            ),
            ("eval loss", f"{optional(result.eval_loss_before)} → {optional(result.eval_loss)} nats/pair"),
        ]
    used = ", ".join(f"{n:,} {name}" for name, n in result.pairs.items())
    held_out += [
        ("pairs", f"{used}; {result.epochs:.2f} epochs; beta {result.beta:g}, variant {result.variant}"),
        *skipped_rows(result.skipped_rows),
        ("reference log-probs", result.reference_logps),
    ]
    if result.reward_plot:
        held_out.append(("reward plot", result.reward_plot))
    weights = [
        ("weights (Hugging Face layout)", f"{result.final_dir}, with the tokenizer from {result.tokenizer}")
    ]
    return run_rows(result, held_out, weights if result.final_dir else [])


def run_ppo(args: argparse.Namespace) -> int:
    """Run ``herd ppo``: resolve the config, train, print the summary (or only print the config)."""
    from herd.posttrain.ppo import PPOConfig, ppo

    return run_training(args, PPOConfig, ppo, ppo_rows)


def ppo_rows(result: PPOResult) -> list[tuple[str, object]]:
    """The summary of a PPO run: the trainer's rows, the held-out score, KL, length and ended share before →
    after (without held-out prompts: the first and last rollouts' score and the last one's KL), the rollouts,
    the prompts used and skipped, the weights."""
    held_out: list[tuple[str, object]] = []
    if result.eval_score is not None:
        held_out += [
            ("held-out score", f"{optional(result.eval_score_before)} → {optional(result.eval_score)}"),
            ("held-out answers ended", f"{percent(result.eval_ended_before)} → {percent(result.eval_ended)}"),
            ("held-out KL to the initial model", f"{optional(result.eval_kl)} nats/token"),
            ("held-out answer length", f"{optional(result.eval_response_length)} tokens"),
        ]
    else:
        held_out += [
            (
                "rollout score (first → last)",
                f"{optional(result.reward_start)} → {optional(result.reward_end)}",
            ),
            ("last rollout's KL to the initial model", f"{optional(result.kl_end)} nats/token"),
        ]
    used = ", ".join(f"{n:,} {name}" for name, n in result.prompts.items())
    held_out += [
        (
            "rollouts",
            f"{result.rollouts:,} ({result.steps_per_rollout} steps each); advantage {result.advantage}, "
            f"beta {result.beta:g}",
        ),
        ("prompts", f"{used}; {result.epochs:.2f} epochs"),
        *skipped_rows(result.skipped_prompts, "prompts"),
    ]
    if result.reward_plot:
        held_out.append(("score and KL plot", result.reward_plot))
    weights = [
        ("weights (Hugging Face layout)", f"{result.final_dir}, with the tokenizer from {result.tokenizer}")
    ]
    return run_rows(result, held_out, weights if result.final_dir else [])


def run_rlhf(args: argparse.Namespace) -> int:
    """Run ``herd rlhf``: resolve the config and every round's stages, run the rounds, print a row per round."""
    from dataclasses import asdict

    from herd.posttrain.rlhf import load_rlhf_config, plan, rlhf

    config = load_rlhf_config(args.config, args.overrides, output=args.output, resume=args.resume)
    trainer = ["log.progress=false"] if args.quiet else []
    if args.max_restarts is not None:
        trainer.append(f"fault.max_restarts={args.max_restarts}")
    if args.print_config:
        rounds = [
            {"round": r.index, "policy": r.policy, "stages": {k: asdict(v) for k, v in r.stages.items()}}
            for r in plan(config, trainer)
        ]
        print(json.dumps({**config.to_dict(), "rounds": rounds}, indent=2))
        return 0
    apply_threads(args)
    result = rlhf(
        config,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        trainer_overrides=trainer,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_rows(rlhf_rows(result))
    return 0


def rlhf_rows(result: RLHFResult) -> list[tuple[str, object]]:
    """The summary of an RLHF run: one row per round (held-out reward, win rates, KL, length), the stages, the files."""
    rows: list[tuple[str, object]] = [("run directory", result.out_dir)]
    for r in result.rounds:
        wins = (
            f", win rate {percent(r['win_rate'])} vs previous, {percent(r['win_rate_vs_initial'])} vs initial"
            if r["round"]
            else ""
        )
        rows.append(
            (
                f"round {r['round']} ({r['name']}{': ' + ' + '.join(r['stages']) if r['stages'] else ''})",
                f"reward {optional(r['reward'])}{wins}, KL {optional(r['kl'])}, length {r['length']:.1f}",
            )
        )
    rows += [
        ("stages run", ", ".join(result.stages_run) or "none"),
        ("stages skipped (finished before)", ", ".join(result.stages_skipped) or "none"),
        ("files", "rounds.json summary.md rounds.png round_*/report.md"),
    ]
    return rows


def run_rs(args: argparse.Namespace) -> int:
    """Run ``herd rs``: sample, score and select, then print what was written."""
    from herd.posttrain.rejection_sampling import load_rs_config, rejection_sample

    config = load_rs_config(args.config, args.overrides, output=args.output)
    apply_threads(args)
    result = rejection_sample(config, progress=not args.quiet)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_rows(rs_rows(result))
    return 0


def rs_rows(result: RSResult) -> list[tuple[str, object]]:
    """The summary of a rejection-sampling run: what was sampled, the rewards per round, the files."""
    summary = result.summary
    rows: list[tuple[str, object]] = [
        ("output", result.output),
        ("prompts", f"{result.prompts} x {result.samples_per_prompt} samples x {result.rounds} round(s)"),
        (
            "this run",
            f"{result.samples_drawn} samples in {result.sampling_seconds:.1f} s "
            f"({result.samples_per_second:.2f} samples/s); {result.batches_done_before} batches were done before",
        ),
    ]
    for r in summary.get("rounds", []):
        rows.append(
            (
                f"round {r['round'] + 1} (T {r['temperature']:g})",
                f"mean best reward {optional(r['mean_best_reward'])}, mean median {optional(r['mean_median_reward'])}, "
                f"pooled best {optional(r['mean_pooled_best_reward'])}",
            )
        )
    if summary:
        rows += [
            (
                "SFT targets",
                f"{summary['sft_rows']} rows, mean reward {optional(summary['mean_best_reward'])}",
            ),
            ("files", "sft.jsonl samples.jsonl summary.json reward_vs_k.png report.md"),
        ]
    return rows


def chat_model_path(name: str, flag: str) -> str:
    """The checkpoint a ``herd gatt`` flag names (a path, or a bundled model: :func:`resolve_init`); it must exist."""
    from herd.infer.loading import check_model_spec
    from herd.posttrain.config import resolve_init

    path = str(resolve_init(name, flag))
    check_model_spec(path, random=False)
    return path


def load_chat_model(path: str) -> tuple[Transformer, ChatFormat]:
    """The model at ``path`` and the chat format of its tokenizer (its own template, else detected)."""
    from herd.infer.loading import load_for_inference
    from herd.tokenizer.chat import chat_format

    model, tokenizer = load_for_inference(path)
    return model, chat_format(tokenizer)


def run_gatt_build(args: argparse.Namespace) -> int:
    """Run ``herd gatt build``: read the dialogues, sample (or continue sampling) their answers, write the rows."""
    from herd.posttrain.data import SkipCounts
    from herd.posttrain.gatt import (
        INSTRUCTIONS,
        build_gatt_dialogues,
        of_categories,
        read_dialogues,
        write_rows,
    )

    instructions = of_categories(INSTRUCTIONS, args.categories)
    dialogues = read_dialogues(args.dialogues, limit=args.limit)
    apply_threads(args)
    model, fmt = load_chat_model(chat_model_path(args.policy, "--policy"))
    progress = args.output / GATT_PROGRESS
    skipped = SkipCounts()
    rows = build_gatt_dialogues(
        model,
        fmt,
        dialogues,
        instructions=instructions,
        placement=args.placement,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=progress,
        skipped=skipped,
    )
    out = write_rows(args.output / GATT_ROWS, rows)
    categories = dict(Counter(row["category"] for row in rows).most_common())
    if args.json:
        result = {
            "output": str(out),
            "progress": str(progress),
            "dialogues": len(dialogues),
            "rows": len(rows),
            "skipped": dict(skipped),
            "categories": categories,
        }
        print(json.dumps(result, indent=2))
    else:
        print_rows(
            [
                ("rows written", f"{len(rows):,} to {out} (one per dialogue, of {len(dialogues):,})"),
                ("skipped dialogues", str(skipped) if skipped else "none"),
                (
                    "instruction categories",
                    ", ".join(f"{n:,} {name}" for name, n in categories.items()) or "none",
                ),
                ("progress", f"{progress} (run the command again to continue)"),
            ]
        )
    return 0


def run_gatt_eval(args: argparse.Namespace) -> int:
    """Run ``herd gatt eval``: each model answers the same dialogues; write the shares per turn and their plot.

    Every model is found before any is loaded, and each is loaded only for its own evaluation, so that
    a wrong path fails at once and two large models are not held together.
    """
    from herd.io.atomic import write_atomically
    from herd.posttrain.gatt import (
        CHECKABLE,
        instruction_following,
        of_categories,
        plot_instruction_following,
        read_dialogues,
    )

    labels = [label for label, _ in args.models]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"--model: label(s) given more than once: {', '.join(repeated)}")
    instructions = of_categories(CHECKABLE, args.categories)
    dialogues = read_dialogues(args.dialogues, limit=args.limit)
    apply_threads(args)
    paths = {label: chat_model_path(name, "--model") for label, name in args.models}
    results = {
        label: instruction_following(
            *load_chat_model(path),
            dialogues,
            instructions=instructions,
            placement=args.placement,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        for label, path in paths.items()
    }
    report = {
        "dialogues": str(args.dialogues),
        "dialogue_count": len(dialogues),
        "placement": args.placement,
        "categories": sorted({i.category for i in instructions}),
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "models": {label: {"model": name, **asdict(results[label])} for label, name in args.models},
    }
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    write_atomically(args.output / FOLLOWING_JSON, lambda f: f.write(text.encode("utf-8")))
    plot_instruction_following(results, args.output / FOLLOWING_PNG)
    if args.json:
        shares = {label: {"shares": r.shares, "counts": r.counts} for label, r in results.items()}
        print(json.dumps({"output": str(args.output), "models": shares}, indent=2))
    else:
        print("\n".join(following_table(results)))
        print(f"wrote {args.output / FOLLOWING_JSON} and {args.output / FOLLOWING_PNG}")
    return 0


def following_table(results: Mapping[str, Following]) -> list[str]:
    """The lines of a table with one row per turn and one column per model: ``share of answered`` dialogues."""
    turns = max(len(result.shares) for result in results.values())
    table = [["turn", *results]]
    for t in range(turns):
        cells = [
            f"{r.shares[t]:.0%} of {r.counts[t]}" if t < len(r.shares) else "-" for r in results.values()
        ]
        table.append([str(t + 1), *cells])
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
