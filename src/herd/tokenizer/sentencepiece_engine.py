"""Llama 1/2 and Code Llama tokenizers: SentencePiece BPE, run by the ``sentencepiece`` library.

Llama 1 §2.1 / docs/spec.md §2: BPE with digits split into single digits and unknown
UTF-8 falling back to byte pieces (``<0x41>``), 32,000 pieces (Code Llama
32,016, adding the infilling tokens ``▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>`` at ids
32007–32010, Code Llama §2.3); ``<unk>`` = 0, ``<s>`` = 1, ``</s>`` = 2.

Control pieces (``<s>``, ``</s>``, infilling tokens) are never produced from
text by SentencePiece itself, which is the security rule herd wants. With
``allow_special=True`` the text is split at control-piece strings and each
piece of text is encoded on its own, with SentencePiece's leading-space
(dummy prefix) rule, as Meta's reference encodes each segment of a prompt.
``decode`` drops control pieces, as SentencePiece (and Meta's reference) does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from herd.tokenizer.base import Tokenizer, TokenizerError, as_text, unencodable

INFILL_PIECES = ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")


def load_processor(model_proto: bytes, source: str) -> spm.SentencePieceProcessor:
    """A SentencePiece processor for a serialized model; a clear error if the bytes are not one."""
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_proto)
    except (RuntimeError, OSError) as exc:
        raise TokenizerError(f"{source}: not a valid SentencePiece model ({exc})") from None
    return processor


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (Llama 1/2, Code Llama, herd's ``llama2``-style training, GGUF ``llama`` vocabularies)."""

    def __init__(
        self, model_proto: bytes, *, source: str = "<sentencepiece>", chat_template: str | None = None
    ):
        self.source = source
        self.chat_template = chat_template
        self.model_proto = model_proto
        self.processor = load_processor(model_proto, source)
        sp = self.processor
        self._specials = {
            sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)
        }
        texts = sorted((name for name in self._specials if name), key=len, reverse=True)
        self._special_pattern = re.compile("(" + "|".join(map(re.escape, texts)) + ")") if texts else None

    @classmethod
    def from_file(cls, path: str | Path, chat_template: str | None = None) -> SentencePieceTokenizer:
        """Load a SentencePiece ``tokenizer.model``."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TokenizerError(f"{path}: cannot read SentencePiece model ({exc.strerror})") from None
        return cls(data, source=str(path), chat_template=chat_template)

    @cached_property
    def proto(self) -> sentencepiece_model_pb2.ModelProto:
        """The parsed model (pieces, scores, types, normalizer and trainer settings)."""
        return sentencepiece_model_pb2.ModelProto.FromString(self.model_proto)

    @cached_property
    def _no_prefix(self) -> spm.SentencePieceProcessor:
        # The same model without the dummy leading space, for text that continues a line.
        proto = sentencepiece_model_pb2.ModelProto.FromString(self.model_proto)
        proto.normalizer_spec.add_dummy_prefix = False
        return load_processor(proto.SerializeToString(), self.source)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def bos_id(self) -> int | None:
        return self.processor.bos_id() if self.processor.bos_id() >= 0 else None

    @property
    def eos_id(self) -> int | None:
        return self.processor.eos_id() if self.processor.eos_id() >= 0 else None

    @property
    def stop_ids(self) -> frozenset[int]:
        """EOS, plus Code Llama's ``▁<EOT>`` which ends an infilled middle."""
        eot = self._specials.get(INFILL_PIECES[3])
        return super().stop_ids | ({eot} if eot is not None else set())

    def id_to_piece(self, token_id: int) -> str:
        self._check_id(token_id)
        return self.processor.id_to_piece(token_id)

    def _segments(self, text: str) -> list[str | int]:
        """``text`` split into plain text and the ids of the control-piece strings it contains."""
        if self._special_pattern is None:
            return [text]
        parts = self._special_pattern.split(text)
        return [self._specials[p] if i % 2 else p for i, p in enumerate(parts) if i % 2 or p]

    def _encode(self, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return self._encode_with(self.processor, [text], True, 1)[0]
        try:
            return self.processor.encode(text, out_type=int)
        except (UnicodeEncodeError, TypeError, RuntimeError):
            raise unencodable([text]) from None

    def _encode_continuation(self, text: str, allow_special: bool) -> list[int]:
        return self._encode_with(self._no_prefix, [text], allow_special, 1)[0]

    def _encode_batch(self, texts: list[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        return self._encode_with(self.processor, texts, allow_special, num_threads)

    def _encode_with(
        self, processor: spm.SentencePieceProcessor, texts: list[str], allow_special: bool, num_threads: int
    ) -> list[list[int]]:
        segments = [self._segments(t) if allow_special else [t] for t in texts]
        plain = [s for segs in segments for s in segs if isinstance(s, str)]
        try:
            encoded = iter(processor.encode(plain, out_type=int, num_threads=num_threads))
        except (UnicodeEncodeError, TypeError, RuntimeError):
            raise unencodable(plain) from None
        out: list[list[int]] = []
        for segs in segments:
            ids: list[int] = []
            for s in segs:
                if isinstance(s, int):
                    ids.append(s)
                else:
                    ids += next(encoded)
            out.append(ids)
        return out

    def encode_infill(self, prefix: str, suffix: str) -> list[int]:
        """Code Llama's prefix-suffix-middle prompt (Code Llama §2.3): ``<s>▁<PRE> prefix ▁<SUF>suffix ▁<MID>``.

        The prefix is encoded as ordinary text (with SentencePiece's leading
        space); the suffix continues the code, so it is encoded without one.
        The model then generates the middle and ends it with ``▁<EOT>``.
        """
        missing = [p for p in INFILL_PIECES if p not in self._specials]
        if missing:
            raise TokenizerError(
                f"{self.source}: no infilling token {missing[0]!r}; is this a Code Llama tokenizer?"
            )
        if self.bos_id is None:
            raise TokenizerError(f"{self.source}: infilling needs a BOS token")
        pre, suf, mid, _ = (self._specials[p] for p in INFILL_PIECES)
        suffix_ids = self._encode_continuation(as_text(suffix, "suffix"), allow_special=False)
        return [self.bos_id, pre, *self.encode(prefix), suf, *suffix_ids, mid]

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return self.processor.decode(list(ids))
