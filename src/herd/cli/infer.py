"""``herd generate`` and ``herd chat``: streaming text generation from the command line.

Generated text goes to stdout as it is produced; a one-line summary (finish
reason, token counts, speeds) goes to stderr, so stdout pipes cleanly. With
``--json``, stdout is a single JSON object instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, TextIO

from herd.cli import describe
from herd.cli.flags import add_json
from herd.cli.model_flags import add_model_args, load_engine
from herd.errors import HerdError
from herd.stdin import read_stdin, read_stdin_line

if TYPE_CHECKING:  # the library (and PyTorch) is imported when a command runs, not to build its --help
    from herd.infer.completion import Completion
    from herd.infer.sampling import SamplingParams

CHAT_DEFAULT_TEMPERATURE = 0.7
CHAT_DEFAULT_TOP_P = 0.9


def _add_sampling_args(parser: argparse.ArgumentParser, max_new_tokens: int, default_mode: str) -> None:
    """Length and sampling flags; the defaults differ (generate: greedy, chat: temperature and top-p)."""
    parser.add_argument(
        "--max-new-tokens", type=int, default=max_new_tokens, help=f"default {max_new_tokens}"
    )
    group = parser.add_argument_group(f"sampling (default: {default_mode})")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always pick the most likely token")
    mode.add_argument("--temperature", type=float, help="sample at this temperature (0 = greedy)")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this probability")
    group.add_argument("--min-p", type=float, help="drop tokens below min-p times the top probability")
    group.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="CTRL penalty on seen tokens (1 = off)"
    )
    group.add_argument("--seed", type=int, help="seed for reproducible sampling")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd generate`` and ``herd chat``."""
    gen = sub.add_parser(
        "generate",
        help="continue a prompt (streaming, KV-cached)",
        description="Continue --prompt with a model and stream the text to stdout. Generation stops at the "
        "tokenizer's end-of-turn/EOS tokens, at a --stop string, after --max-new-tokens, or when the "
        "context window is full (finish reason: stop, length, context).",
        epilog="examples:\n"
        "  herd generate SmolLM2-135M-Instruct.Q4_1.gguf --prompt 'The capital of France is'\n"
        "  herd generate llama3-dir/ --prompt 'Once upon' --temperature 0.8 --top-p 0.95 --seed 1\n"
        "  herd generate llama2-tiny --random --prompt hello --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(gen)
    gen.add_argument("--prompt", help="the text to continue ('-' reads it from stdin)")
    gen.add_argument("--infill-prefix", metavar="TEXT", help="Code Llama infilling: the code before the gap")
    gen.add_argument("--infill-suffix", metavar="TEXT", help="Code Llama infilling: the code after the gap")
    _add_sampling_args(gen, 64, "greedy")
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    gen.add_argument("--ignore-eos", action="store_true", help="do not stop at EOS/end-of-turn tokens")
    gen.add_argument(
        "--bos",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the prompt with BOS (default: when the tokenizer's BOS opens documents, as in Llama)",
    )
    gen.add_argument(
        "--truncate",
        choices=("left",),
        help="drop the prompt's oldest tokens when it does not fit the context (default: error)",
    )
    add_json(gen, "the completion (text, token ids, finish reason, logprobs), not streamed,")
    gen.set_defaults(func=_generate)

    chat = sub.add_parser(
        "chat",
        help="interactive, streaming chat in the model's chat format",
        description="Chat with a model in its own format (Llama 2 [INST], Llama 3 headers, or the "
        "tokenizer's jinja template such as ChatML). Type a message and press Enter; /reset starts over, "
        "/exit (or Ctrl-D, Ctrl-C) quits. Old turns are dropped when the conversation outgrows the "
        "context. Reads stdin line by line, so it can be piped.",
        epilog="exit status:\n"
        "  0 at /exit, end of input or Ctrl-C. 2 when a turn fails (a message too long for the context):\n"
        "  piped input stops at the first failed turn; an interactive chat reports it, goes on, and\n"
        "  exits 2 at the end.\n"
        "example:\n  printf 'Hi!\\n/exit\\n' | herd chat SmolLM2-135M-Instruct.Q4_1.gguf --greedy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(chat)
    chat.add_argument("--system", help="system message")
    chat.add_argument("--chat-format", choices=("llama2", "llama3", "jinja"), help="default: detected")
    _add_sampling_args(chat, 512, f"temperature {CHAT_DEFAULT_TEMPERATURE}, top-p {CHAT_DEFAULT_TOP_P}")
    chat.set_defaults(func=_chat)


def _sampling(
    args: argparse.Namespace, default_temperature: float, default_top_p: float | None
) -> SamplingParams:
    """Sampling from the flags; a filter flag alone (--top-p ...) samples at temperature 1 when the default is greedy."""
    from herd.infer.sampling import SamplingParams

    filters = args.top_k is not None or args.top_p is not None or args.min_p is not None
    if args.greedy and filters:
        raise HerdError("--greedy cannot be combined with --top-k, --top-p or --min-p")
    if args.greedy:
        temperature = 0.0
    elif args.temperature is not None:
        temperature = args.temperature
    else:
        temperature = default_temperature or (1.0 if filters else 0.0)
    top_p = args.top_p if args.top_p is not None or not temperature else default_top_p
    return SamplingParams(
        temperature=temperature,
        top_k=args.top_k,
        top_p=top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def _summary(c: Completion) -> str:
    n = len(c.token_ids)
    rate = (n - 1) / c.decode_seconds if n > 1 and c.decode_seconds > 0 else 0.0
    truncated = f", {c.truncated_tokens} dropped from the left" if c.truncated_tokens else ""
    return (
        f"[{c.finish_reason}: {n} tokens; prompt {c.prompt_tokens} tokens{truncated} in "
        f"{c.prefill_seconds:.2f}s; decode {rate:.1f} tok/s]"
    )


def _write(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _generate(args: argparse.Namespace) -> int:
    from herd.infer.completion import generate
    from herd.infer.generate import check_max_new_tokens
    from herd.infer.loading import check_model_spec

    gap = (args.infill_prefix, args.infill_suffix)
    if (gap == (None, None)) == (args.prompt is None) or gap.count(None) == 1:
        raise HerdError("give --prompt, or --infill-prefix and --infill-suffix together (not both)")
    if args.prompt is None and (args.bos is not None or args.truncate or args.ignore_eos):
        raise HerdError("--bos, --truncate and --ignore-eos do not apply to --infill-prefix/--infill-suffix")
    prompt = read_stdin() if args.prompt == "-" else args.prompt
    if prompt == "":
        raise HerdError("the prompt is empty")
    check_max_new_tokens(args.max_new_tokens)
    sampling = _sampling(args, 0.0, None)
    check_model_spec(args.model, args.random)
    engine, tokenizer = load_engine(args)
    stream = None if args.json else lambda _row, text: _write(sys.stdout, text)
    if prompt is None:
        from herd.infer.infilling import infill

        completion = infill(
            engine,
            tokenizer,
            args.infill_prefix,
            args.infill_suffix,
            max_new_tokens=args.max_new_tokens,
            **dataclasses.asdict(sampling),
            stop=args.stop,
            stream=stream,
        )
    else:
        completion = generate(
            engine,
            tokenizer,
            [prompt],
            max_new_tokens=args.max_new_tokens,
            **dataclasses.asdict(sampling),
            stop=args.stop,
            ignore_eos=args.ignore_eos,
            add_bos=args.bos,
            truncate=args.truncate,
            stream=stream,
        )[0]
    if args.json:
        print(json.dumps(completion.to_dict(), ensure_ascii=False))
    else:
        _write(sys.stdout, "\n")
        print(_summary(completion), file=sys.stderr)
    return 0


def _chat(args: argparse.Namespace) -> int:
    """The chat loop; exit status 2 when a turn failed (piped input stops at the first failure)."""
    from herd.infer.chat_session import ChatSession
    from herd.infer.generate import check_max_new_tokens
    from herd.infer.loading import check_model_spec

    check_max_new_tokens(args.max_new_tokens)
    sampling = _sampling(args, CHAT_DEFAULT_TEMPERATURE, CHAT_DEFAULT_TOP_P)
    check_model_spec(args.model, args.random)
    engine, tokenizer = load_engine(args)
    session = ChatSession(
        engine,
        tokenizer,
        system=args.system,
        sampling=sampling,
        max_new_tokens=args.max_new_tokens,
        style=args.chat_format,
    )
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"herd chat: {args.model}. /reset starts over, /exit quits.", file=sys.stderr)
    failed = False
    try:
        while True:
            if interactive:
                _write(sys.stderr, "> ")
            line = read_stdin_line()
            if not line:
                break
            message = line.rstrip("\n")
            command = message.strip()
            if not command:
                continue
            if command == "/exit":
                break
            if command == "/reset":
                session.reset()
                print("[conversation reset]", file=sys.stderr)
                continue
            try:
                session.send(message, stream=lambda text: _write(sys.stdout, text))
            except HerdError as exc:
                if not interactive:  # a script's later turns may depend on this one: stop here
                    raise
                print(f"herd: error: {describe(exc)[1]}", file=sys.stderr)
                failed = True
                continue
            _write(sys.stdout, "\n")
    except KeyboardInterrupt:
        _write(sys.stdout, "\n")
    return 2 if failed else 0
