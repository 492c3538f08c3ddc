"""Code Llama infilling (Code Llama §2.3): the PSM prompt laid out as Meta's reference lays it out, user text
that never becomes an infilling token, and generation that ends at ``▁<EOT>``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from infer_helpers import tiny_model
from sentencepiece import sentencepiece_model_pb2

from herd.errors import HerdError
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.completion import complete_ids
from herd.infer.engine import Engine
from herd.infer.infilling import infill, infill_prompt_ids
from herd.infer.sampling import SamplingParams
from herd.model.presets import get_preset
from herd.tokenizer import SentencePieceTokenizer, load_tokenizer
from herd.tokenizer.train import train_tokenizer

# Code Llama's infilling pieces and their ids in its 32,016-token vocabulary (Code Llama §2.3).
CODE_LLAMA_IDS = {"▁<PRE>": 32007, "▁<SUF>": 32008, "▁<MID>": 32009, "▁<EOT>": 32010}
CODE_LLAMA_VOCAB = 32016
CODE = '''def mean(xs: list[float]) -> float:
    """The arithmetic mean of xs."""
    total = 0.0
    for x in xs:
        total += x
    return total / len(xs)
'''
CASES = [
    ("def add(a, b):\n    ", "\n    return c\n"),
    ("x = ", " + 1"),
    ("x = ", "y + 1"),
    ("", ""),
    ("déjà vu = ", "🙂\n"),
]


def code_llama_layout(trained: Path, out: Path) -> Path:
    """The tokenizer trained in ``trained``, padded with unused pieces so that the four infilling tokens sit
    at Code Llama's ids 32007-32010 of a 32,016-piece vocabulary, as control pieces."""
    proto = sentencepiece_model_pb2.ModelProto.FromString((trained / "tokenizer.model").read_bytes())
    unused = sentencepiece_model_pb2.ModelProto.SentencePiece.UNUSED
    control = sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL
    filler = 0
    for piece, token_id in CODE_LLAMA_IDS.items():
        while len(proto.pieces) < token_id:
            proto.pieces.add(piece=f"<unused{filler}>", score=0.0, type=unused)
            filler += 1
        proto.pieces.add(piece=piece, score=0.0, type=control)
    while len(proto.pieces) < CODE_LLAMA_VOCAB:
        proto.pieces.add(piece=f"<unused{filler}>", score=0.0, type=unused)
        filler += 1
    out.mkdir()
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    return out


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama2-style SentencePiece model without infilling tokens (vocab 400)."""
    out = tmp_path_factory.mktemp("tok") / "plain"
    docs = [CODE, *CODE.splitlines(), "déjà vu 🙂 <PRE> x = y + 1"] * 3
    train_tokenizer(iter(docs), out, style="llama2", vocab_size=400, heldout=0)
    return out


@pytest.fixture(scope="module")
def code_llama(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SentencePieceTokenizer:
    tokenizer = load_tokenizer(code_llama_layout(plain_dir, tmp_path_factory.mktemp("tok") / "codellama"))
    assert isinstance(tokenizer, SentencePieceTokenizer)
    return tokenizer


def meta_reference(sp: spm.SentencePieceProcessor, prefix: str, suffix: str) -> list[int]:
    """Meta's ``infilling_prompt_tokens`` (PSM) with sentencepiece itself: BOS, PRE, the prefix as text,
    SUF, the suffix encoded after a sentinel character whose pieces are then dropped, MID."""
    head = sp.encode("☺")
    with_sentinel = sp.encode("☺" + suffix)
    assert with_sentinel[: len(head)] == head
    pre, suf, mid = (sp.piece_to_id(p) for p in ("▁<PRE>", "▁<SUF>", "▁<MID>"))
    return [sp.bos_id(), pre, *sp.encode(prefix), suf, *with_sentinel[len(head) :], mid]


def test_psm_ids_are_meta_reference_layout(code_llama: SentencePieceTokenizer) -> None:
    sp = spm.SentencePieceProcessor(model_proto=code_llama.model_proto)
    assert code_llama.vocab_size == CODE_LLAMA_VOCAB
    assert {p: code_llama.special_tokens[p] for p in CODE_LLAMA_IDS} == CODE_LLAMA_IDS
    for prefix, suffix in CASES:
        assert infill_prompt_ids(code_llama, prefix, suffix) == meta_reference(sp, prefix, suffix)
    # By hand: the prefix keeps SentencePiece's leading space, the suffix gets none.
    ids = infill_prompt_ids(code_llama, "x", "y")
    assert ids[:2] == [1, 32007] and ids[-1] == 32009
    suf = ids.index(32008)
    assert code_llama.decode(ids[2:suf]) == "x" and "".join(map(code_llama.id_to_piece, ids[2:suf])) == "▁x"
    assert "".join(map(code_llama.id_to_piece, ids[suf + 1 : -1])) == "y"
    assert 32010 in code_llama.stop_ids


def test_user_text_never_becomes_infilling_tokens(code_llama: SentencePieceTokenizer) -> None:
    prefix, suffix = "<PRE> a ▁<SUF> <MID>", "<EOT> ▁<EOT> </s> <s>"
    ids = infill_prompt_ids(code_llama, prefix, suffix)
    specials = [i for i in ids if code_llama.is_special(i)]
    assert specials == [1, 32007, 32008, 32009]
    # Decoding drops the control pieces and keeps every typed character ('▁' reads as a space).
    assert code_llama.decode(ids) == (prefix + suffix).replace("▁", " ")


def test_tokenizer_without_infilling_tokens_is_one_line_error(plain_dir: Path) -> None:
    plain = load_tokenizer(plain_dir)
    with pytest.raises(HerdError) as raised:
        infill_prompt_ids(plain, "a", "b")
    message = str(raised.value)
    assert "\n" not in message and str(plain_dir) in message
    assert all(piece in message for piece in CODE_LLAMA_IDS)
    with pytest.raises(HerdError, match="▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>"):
        infill_prompt_ids(ByteTokenizer(), "a", "b")


def test_generation_stops_at_eot(code_llama: SentencePieceTokenizer) -> None:
    """A random model's greedy middle, then the same model with the output rows of its k-th token and
    ``▁<EOT>`` swapped: the middle ends there, its text the first k-1 tokens, ``▁<EOT>`` its last id."""
    model = tiny_model(get_preset("codellama-tiny").replace(vocab_size=CODE_LLAMA_VOCAB), seed=3, std=0.1)
    engine = Engine(model)
    prefix, suffix = "def add(a, b):\n    ", "\n    return c\n"
    prompt = infill_prompt_ids(code_llama, prefix, suffix)
    free = complete_ids(engine, code_llama, [prompt], 8, SamplingParams(temperature=0.0), ignore_eos=True)[
        0
    ].token_ids
    eot = CODE_LLAMA_IDS["▁<EOT>"]
    assert eot not in free
    k = next(k for k in range(1, len(free)) if free[k] not in free[:k])
    with torch.no_grad():
        rows = model.output.weight
        rows[[free[k], eot]] = rows[[eot, free[k]]]
    engine = Engine(model)
    middle = infill(engine, code_llama, prefix, suffix, max_new_tokens=8)
    assert middle.token_ids == [*free[:k], eot] and middle.finish_reason == "stop"
    assert middle.text == code_llama.decode(prompt[-2:] + free[:k])[len(code_llama.decode(prompt[-2:])) :]
    assert middle.prompt_tokens == len(prompt)
