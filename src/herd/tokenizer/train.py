"""Training new tokenizers in the two Llama styles, and measuring them on held-out text.

* ``llama2``: SentencePiece BPE with Llama's settings (Llama 1 §2.1, docs/spec.md §2):
  digits split, byte fallback, identity normalization, whitespace kept as
  ``▁``; ``<unk>``/``<s>``/``</s>`` = 0/1/2; extra specials are control
  symbols, so they never come out of user text. ``vocab_size`` counts every piece.
* ``llama3``: byte-level BPE with Llama 3's pre-tokenizer pattern (Llama 3 §3.1),
  trained by the ``tokenizers`` library and written in tiktoken's format
  (``tokenizer.model``) plus ``special_tokens.json``. ``vocab_size`` counts the
  BPE ranks; the special tokens (Llama 3.1 table, 256 by default) come on top,
  as Llama 3's 128,000 + 256.

One document in every ``1/heldout`` is kept out of training and used to report
bytes per token and tokens per word, next to a reference tokenizer on the same text.

Both styles treat ``vocab_size`` alike when the corpus is too small to reach
it (too few distinct pieces or merges): training succeeds with the size the
corpus supports, and the result says so (:attr:`TrainResult.shortfall`:
``asked for 128,000 BPE ranks, the corpus supports 45,884; trained 45,884``).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import tokenizers
from tokenizers import Regex, models, trainers
from tokenizers import pre_tokenizers as pre

from herd.io.atomic import atomic_file, write_atomically
from herd.tokenizer.base import Tokenizer, TokenizerError, cpu_count
from herd.tokenizer.bytelevel import piece_to_bytes
from herd.tokenizer.sentencepiece_engine import SentencePieceTokenizer
from herd.tokenizer.tiktoken_engine import (
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    LLAMA3_PATTERN,
    NUM_LLAMA3_SPECIALS,
    SPECIALS_FILE,
    TiktokenTokenizer,
    llama3_special_tokens,
    write_specials_table,
    write_tiktoken_ranks,
)

STYLES = ("llama2", "llama3")
MAX_HELDOUT_BYTES = 8 << 20
# Llama 2's tokenizer.model trainer settings (read from its model proto).
LLAMA2_TRAINER = {
    "model_type": "bpe",
    "character_coverage": 0.99995,
    "split_digits": True,
    "byte_fallback": True,
    "normalization_rule_name": "identity",
    "add_dummy_prefix": True,
    "remove_extra_whitespaces": False,
    "allow_whitespace_only_pieces": True,
    "split_by_unicode_script": True,
    "split_by_number": True,
    "max_sentence_length": 4192,
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
}


@dataclass(frozen=True)
class TokenizerStats:
    """Compression of one tokenizer on the held-out text."""

    name: str
    vocab_size: int
    tokens: int
    bytes_per_token: float
    tokens_per_word: float


# What ``vocab_size`` counts in each style.
VOCAB_UNITS = {"llama2": "pieces", "llama3": "BPE ranks"}


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_tokenizer` wrote and how well it compresses held-out text.

    ``requested_vocab_size`` is the ``vocab_size`` asked for, ``trained_vocab_size``
    what was trained, in the same unit (:data:`VOCAB_UNITS`); the second is
    smaller when the corpus cannot support the first.
    """

    tokenizer: Tokenizer
    out_dir: Path
    heldout_documents: int
    heldout_bytes: int
    stats: tuple[TokenizerStats, ...]
    style: str
    requested_vocab_size: int
    trained_vocab_size: int

    @property
    def shortfall(self) -> str | None:
        """One line saying that the corpus supported fewer pieces or ranks than asked for; None if it did not."""
        if self.trained_vocab_size >= self.requested_vocab_size:
            return None
        return (
            f"asked for {self.requested_vocab_size:,} {VOCAB_UNITS[self.style]}, the corpus supports "
            f"{self.trained_vocab_size:,}; trained {self.trained_vocab_size:,}"
        )

    def report(self) -> str:
        """The :attr:`shortfall` if any, then a small table: vocabulary, bytes per token and tokens per
        word of each tokenizer."""
        lines = [] if self.shortfall is None else [self.shortfall]
        lines.append(f"held-out: {self.heldout_documents} documents, {self.heldout_bytes} bytes")
        lines.append(f"{'tokenizer':<40} {'vocab':>8} {'tokens':>10} {'bytes/token':>12} {'tokens/word':>12}")
        for s in self.stats:
            lines.append(
                f"{s.name[-40:]:<40} {s.vocab_size:>8} {s.tokens:>10} {s.bytes_per_token:>12.3f} {s.tokens_per_word:>12.3f}"
            )
        return "\n".join(lines)


def measure(tokenizer: Tokenizer, texts: Sequence[str], name: str | None = None) -> TokenizerStats:
    """Bytes per token and tokens per whitespace-separated word of ``tokenizer`` on ``texts``."""
    tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts))
    size = sum(len(t.encode("utf-8")) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return TokenizerStats(
        name=name or tokenizer.source,
        vocab_size=tokenizer.vocab_size,
        tokens=tokens,
        bytes_per_token=size / tokens if tokens else 0.0,
        tokens_per_word=tokens / words if words else 0.0,
    )


class _Split:
    """Routes documents to training or held-out (every ``every``-th, up to a byte cap) and counts bytes."""

    def __init__(self, heldout: float, on_bytes: Callable[[int], None]) -> None:
        if not 0 <= heldout < 1:
            raise TokenizerError(f"held-out fraction must be in [0, 1), got {heldout}")
        self.every = round(1 / heldout) if heldout else 0
        self.heldout: list[str] = []
        self.heldout_bytes = 0
        self.trained = 0
        self.on_bytes = on_bytes

    def training(self, documents: Iterable[str]) -> Iterator[str]:
        for n, doc in enumerate(documents):
            size = len(doc.encode("utf-8"))
            self.on_bytes(size)
            if self.every and n % self.every == self.every - 1 and self.heldout_bytes < MAX_HELDOUT_BYTES:
                self.heldout.append(doc)
                self.heldout_bytes += size
                continue
            self.trained += 1
            yield doc


def _train_llama2(texts: Iterator[str], out: Path, vocab_size: int, specials: Sequence[str]) -> Tokenizer:
    lines = (line for doc in texts for line in doc.split("\n") if line.strip())
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=lines,
            model_writer=model,
            vocab_size=vocab_size,
            control_symbols=list(specials),
            num_threads=cpu_count(),
            minloglevel=2,
            # a soft limit: a corpus with fewer distinct pieces than vocab_size gives the pieces it has,
            # as the llama3 style does, instead of an error
            hard_vocab_limit=False,
            **LLAMA2_TRAINER,
        )
    except RuntimeError as exc:
        raise TokenizerError(f"SentencePiece training failed: {str(exc).strip()}") from None
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "tokenizer.model", lambda f: f.write(model.getvalue()))
    return SentencePieceTokenizer.from_file(out / "tokenizer.model")


def _train_llama3(
    texts: Iterator[str], out: Path, vocab_size: int, specials: Sequence[str], num_special: int
) -> Tokenizer:
    if vocab_size <= 256:
        raise TokenizerError(
            f"a byte-level BPE needs more than the 256 byte tokens, got vocab size {vocab_size}"
        )
    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre.Sequence(
        [
            pre.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=pre.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    vocab: dict[str, int] = json.loads(bpe.to_str())["model"]["vocab"]
    ranks = {piece_to_bytes(piece): rank for piece, rank in vocab.items()}
    table = llama3_special_tokens(len(ranks), count=num_special)
    reserved = [name for name in table if name.startswith("<|reserved_special_token_")]
    if len(specials) > len(reserved):
        raise TokenizerError(f"{len(specials)} extra specials but only {len(reserved)} reserved slots")
    renamed = dict(zip(reserved, specials, strict=False))
    clash = [s for s in specials if s in table]
    if clash:
        raise TokenizerError(f"special token {clash[0]!r} is already in the Llama 3 table")
    table = {renamed.get(name, name): token_id for name, token_id in table.items()}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "tokenizer.model") as tmp:
        write_tiktoken_ranks(ranks, tmp)
    with atomic_file(out / SPECIALS_FILE) as tmp:
        write_specials_table(tmp, table, BEGIN_OF_TEXT, END_OF_TEXT)
    return TiktokenTokenizer.from_file(out / "tokenizer.model", table)


def check_output_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a path, refused before any work when a file stands in its place."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TokenizerError(f"{out}: exists and is not a directory")
    return out


def train_tokenizer(
    inputs: Iterable[str],
    out_dir: str | Path,
    *,
    style: str,
    vocab_size: int,
    specials: Sequence[str] = (),
    num_special: int = NUM_LLAMA3_SPECIALS,
    heldout: float = 0.01,
    references: Sequence[Tokenizer] = (),
    on_bytes: Callable[[int], None] = lambda n: None,
) -> TrainResult:
    """Train a ``style`` tokenizer on the documents ``inputs`` and write it to ``out_dir``.

    ``on_bytes`` is called with the size of each document read (the CLI's
    progress bar). The result compares the new tokenizer with ``references``
    on the held-out documents.
    """
    if style not in STYLES:
        raise TokenizerError(f"unknown tokenizer style {style!r} (expected {' or '.join(STYLES)})")
    out = check_output_dir(out_dir)
    split = _Split(heldout, on_bytes)
    training = split.training(inputs)
    first = next(training, None)
    if first is None:
        raise TokenizerError("no training documents: the input is empty")
    documents = itertools.chain([first], training)
    if style == "llama2":
        tokenizer = _train_llama2(documents, out, vocab_size, specials)
    else:
        tokenizer = _train_llama3(documents, out, vocab_size, specials, num_special)
    stats = tuple(measure(t, split.heldout) for t in (tokenizer, *references)) if split.heldout else ()
    trained = len(tokenizer.ranks) if isinstance(tokenizer, TiktokenTokenizer) else tokenizer.vocab_size
    return TrainResult(
        tokenizer, out, len(split.heldout), split.heldout_bytes, stats, style, vocab_size, trained
    )
