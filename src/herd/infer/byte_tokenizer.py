"""A byte-level fallback tokenizer for smoke tests of randomly initialised presets.

``herd generate llama2-tiny --random`` has no tokenizer file to load, so text
is mapped to its UTF-8 bytes: ids 0–255 are the bytes, 256 is ``<s>`` (BOS)
and 257 is ``</s>`` (EOS). Any model with at least 258 vocabulary rows can
use it; the output of a random model is noise either way, but every code path
(encoding, streaming, stop handling) runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from herd.tokenizer.base import Tokenizer, unencodable

BOS, EOS = "<s>", "</s>"
_SPECIALS = {BOS: 256, EOS: 257}
_SPECIAL_RE = re.compile("(" + "|".join(map(re.escape, _SPECIALS)) + ")")


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids, plus BOS and EOS."""

    source = "<byte-level fallback>"

    @property
    def vocab_size(self) -> int:
        return 256 + len(_SPECIALS)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(_SPECIALS)

    @property
    def bos_id(self) -> int:
        return _SPECIALS[BOS]

    @property
    def eos_id(self) -> int:
        return _SPECIALS[EOS]

    def id_to_piece(self, token_id: int) -> str:
        self._check_id(token_id)
        names = {i: name for name, i in _SPECIALS.items()}
        return names.get(token_id, f"<0x{token_id:02X}>")

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        out: list[str] = []
        run = bytearray()
        for i in ids:
            if i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run.clear()
            out.append(self.id_to_piece(i))
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def _encode(self, text: str, allow_special: bool) -> list[int]:
        parts = _SPECIAL_RE.split(text) if allow_special else [text]
        ids: list[int] = []
        try:
            for part in parts:
                ids += (
                    [_SPECIALS[part]] if allow_special and part in _SPECIALS else list(part.encode("utf-8"))
                )
        except UnicodeEncodeError:
            raise unencodable([text]) from None
        return ids

    def _encode_batch(self, texts: list[str], allow_special: bool, num_threads: int) -> list[list[int]]:
        return [self._encode(t, allow_special) for t in texts]
