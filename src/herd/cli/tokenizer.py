"""``herd tokenizer``: train, inspect and run tokenizers from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tqdm import tqdm

from herd.argtypes import non_negative_float, non_negative_int, positive_int
from herd.cli.flags import add_json, add_output, add_quiet
from herd.stdin import read_stdin
from herd.tokenizer.base import Tokenizer, TokenizerError, as_text
from herd.tokenizer.corpus import iter_documents, total_bytes
from herd.tokenizer.load import load_tokenizer
from herd.tokenizer.official import official_llama3
from herd.tokenizer.tiktoken_engine import NUM_LLAMA3_SPECIALS
from herd.tokenizer.train import STYLES, check_output_dir, train_tokenizer

TOKENIZER_HELP = "a tokenizer file (tokenizer.model, tokenizer.json, .gguf) or a model directory"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``herd tokenizer`` with its ``train``, ``encode``, ``decode`` and ``info`` actions."""
    tok = sub.add_parser(
        "tokenizer",
        help="train, inspect and run tokenizers (SentencePiece, tiktoken, tokenizer.json, GGUF)",
        description="Tokenizers of the Llama family: Llama 1/2 and Code Llama SentencePiece models, Llama 3 "
        "tiktoken models, Hugging Face tokenizer.json files and vocabularies embedded in GGUF files.",
    )
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    train = tok_sub.add_parser(
        "train",
        help="train a llama2-style (SentencePiece) or llama3-style (tiktoken) tokenizer",
        description="Train a tokenizer on text, JSONL or Parquet files (streamed; Parquet needs pyarrow). "
        "llama2: SentencePiece BPE with Llama's settings (digits split, byte fallback, identity "
        "normalization); VOCAB counts every piece. llama3: byte-level BPE with Llama 3's pre-tokenizer "
        "pattern, written as a tiktoken tokenizer.model plus special_tokens.json; VOCAB counts BPE ranks and "
        "the special tokens come on top. One document in 1/HELDOUT is held out and used to report vocabulary "
        "size, bytes per token and tokens per word next to the official Llama 3 tokenizer. A corpus too "
        "small for VOCAB gives the size it supports, in both styles, and the output says so.",
        epilog="examples:\n  herd tokenizer train --style llama2 --vocab-size 32000 -o tok/ corpus.txt\n"
        "  herd tokenizer train --style llama3 --vocab-size 128000 -o tok3/ shard-*.jsonl --field text",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "inputs", nargs="+", metavar="INPUT", help=".txt (documents split at blank lines), .jsonl, .parquet"
    )
    add_output(train, "output directory (tokenizer.model [+ special_tokens.json])", aliases=("--out",))
    train.add_argument(
        "--style", required=True, choices=STYLES, help="llama2 (SentencePiece) or llama3 (tiktoken)"
    )
    train.add_argument(
        "--vocab-size", type=positive_int, required=True, help="pieces (llama2) or BPE ranks (llama3)"
    )
    train.add_argument(
        "--special", action="append", default=[], metavar="TOKEN", help="an extra special token (repeatable)"
    )
    train.add_argument(
        "--num-special",
        type=non_negative_int,
        default=NUM_LLAMA3_SPECIALS,
        help="llama3: size of the special-token table",
    )
    train.add_argument("--field", default="text", help="JSONL/Parquet field holding the text (default: text)")
    train.add_argument(
        "--heldout",
        type=non_negative_float,
        default=0.01,
        help="fraction of documents held out (default 0.01)",
    )
    train.add_argument(
        "--reference", default=None, help="tokenizer to compare with (default: official Llama 3)"
    )
    add_quiet(train)
    add_json(
        train,
        "the output, vocabulary size (in ids, and in VOCAB's unit as requested and as trained) and held-out "
        "statistics",
    )
    train.set_defaults(func=_train)

    encode = tok_sub.add_parser(
        "encode",
        help="print the ids of a text",
        description="Encode TEXT (or --file, or stdin) and print the ids. Special-token strings are plain "
        "text unless --allow-special.",
        epilog="examples:\n  herd tokenizer encode tok/ 'Hello world' --pieces\n"
        "  herd tokenizer encode Meta-Llama-3-8B/ --file prompt.txt --bos --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encode.add_argument("tokenizer", metavar="TOKENIZER", help=TOKENIZER_HELP)
    encode.add_argument("text", nargs="?", help="text to encode (default: read --file or stdin)")
    encode.add_argument("--file", help="read the text from this file (must be UTF-8)")
    encode.add_argument("--bos", action="store_true", help="prepend BOS")
    encode.add_argument("--eos", action="store_true", help="append EOS")
    encode.add_argument(
        "--allow-special", action="store_true", help="parse special-token strings in the text"
    )
    encode.add_argument("--pieces", action="store_true", help="print id<TAB>piece per line instead")
    add_json(encode, 'the ids (and with --pieces the pieces): {"ids": [...], "pieces": [...]}')
    encode.set_defaults(func=_encode)

    decode = tok_sub.add_parser(
        "decode",
        help="print the text of ids",
        description="Decode IDS (or, without them, the ids on stdin) to text. Standard input takes what "
        "herd tokenizer encode prints: ids separated by spaces, commas or lines, a JSON list, --json's "
        '{"ids": [...]} or --pieces\'s id<TAB>piece lines, so encode | decode round-trips.',
        epilog="examples:\n  herd tokenizer decode tok/ 9906 1917\n"
        "  herd tokenizer encode tok/ 'Hello world' | herd tokenizer decode tok/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("tokenizer", metavar="TOKENIZER", help=TOKENIZER_HELP)
    decode.add_argument(
        "ids", nargs="*", type=non_negative_int, metavar="ID", help="token ids (default: read stdin)"
    )
    add_json(decode, 'the text: {"text": ...}')
    decode.set_defaults(func=_decode)

    info = tok_sub.add_parser(
        "info",
        help="engine, vocabulary size and special tokens",
        description="Print the engine, vocabulary size, BOS/EOS/stop ids, special tokens and chat template.",
        epilog="example:\n  herd tokenizer info SmolLM2-135M-Instruct.Q4_1.gguf --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("tokenizer", metavar="TOKENIZER", help=TOKENIZER_HELP)
    add_json(info, "the engine, ids and special tokens")
    info.set_defaults(func=_info)
    tok.set_defaults(func=lambda args: tok.print_help() or 2)


def _train(args: argparse.Namespace) -> int:
    check_output_dir(args.output)
    reference = args.reference or official_llama3()
    references = [load_tokenizer(reference)] if reference else []
    with tqdm(
        total=total_bytes(args.inputs), unit="B", unit_scale=True, desc="reading", disable=args.quiet
    ) as bar:
        result = train_tokenizer(
            iter_documents(args.inputs, args.field),
            args.output,
            style=args.style,
            vocab_size=args.vocab_size,
            specials=args.special,
            num_special=args.num_special,
            heldout=args.heldout,
            references=references,
            on_bytes=bar.update,
        )
    if args.json:
        summary = {
            "output": str(result.out_dir),
            "vocab_size": result.tokenizer.vocab_size,
            "requested_vocab_size": result.requested_vocab_size,
            "trained_vocab_size": result.trained_vocab_size,
            "heldout_documents": result.heldout_documents,
            "heldout_bytes": result.heldout_bytes,
            "stats": [dataclasses.asdict(s) for s in result.stats],
        }
        print(json.dumps(summary))
        return 0
    print(f"wrote {result.out_dir} ({result.tokenizer.vocab_size} ids)")
    print(result.report())
    return 0


def _read_input(args: argparse.Namespace) -> str:
    if args.text is not None:
        return args.text
    if args.file:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise TokenizerError(f"{args.file}: cannot read ({exc.strerror})") from None
        return as_text(data, args.file)
    return read_stdin()


def _encode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer)
    ids = tokenizer.encode(_read_input(args), bos=args.bos, eos=args.eos, allow_special=args.allow_special)
    if args.json:
        pieces = {"pieces": [tokenizer.id_to_piece(i) for i in ids]} if args.pieces else {}
        print(json.dumps({"ids": ids} | pieces, ensure_ascii=False))
    elif args.pieces:
        print("\n".join(f"{i}\t{tokenizer.id_to_piece(i)}" for i in ids))
    else:
        print(" ".join(map(str, ids)))
    return 0


def parse_ids(text: str, source: str = "standard input") -> list[int]:
    """The token ids in ``text``, in any form ``herd tokenizer encode`` prints them.

    A JSON list of ids, a JSON object with an ``ids`` list (``--json``), lines
    of ``id<TAB>piece`` (``--pieces``: the id is what precedes the tab), or ids
    separated by whitespace and/or commas.
    """
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise TokenizerError(f"{source}: not valid JSON ({exc})") from None
        ids = value.get("ids") if isinstance(value, dict) else value
        if not isinstance(ids, list) or not all(type(i) is int and i >= 0 for i in ids):
            raise TokenizerError(f'{source}: expected a JSON list of token ids or {{"ids": [...]}}')
        return ids
    if "\t" in stripped:
        words = [line.split("\t", 1)[0] for line in stripped.splitlines() if line.strip()]
    else:
        words = stripped.replace(",", " ").split()
    words = [word.strip() for word in words]
    for word in words:
        if not (word.isascii() and word.isdigit()):
            raise TokenizerError(
                f"{source}: {word[:40]!r} is not a token id (expected ids separated by spaces or "
                "commas, a JSON list, or what herd tokenizer encode prints)"
            )
    return [int(word) for word in words]


def _decode(args: argparse.Namespace) -> int:
    ids = args.ids if args.ids else parse_ids(read_stdin())
    text = load_tokenizer(args.tokenizer).decode(ids)
    print(json.dumps({"text": text}, ensure_ascii=False) if args.json else text)
    return 0


def _describe(tokenizer: Tokenizer) -> dict[str, object]:
    return {
        "source": tokenizer.source,
        "engine": type(tokenizer).__name__,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "stop_ids": sorted(tokenizer.stop_ids),
        "special_tokens": len(tokenizer.special_tokens),
        "chat_template": tokenizer.chat_template is not None,
    }


def _info(args: argparse.Namespace) -> int:
    info = _describe(load_tokenizer(args.tokenizer))
    if args.json:
        print(json.dumps(info))
    else:
        print("\n".join(f"{k:>15}: {v}" for k, v in info.items()))
    return 0
