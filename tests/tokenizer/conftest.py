"""Fixtures of the tokenizer tests: a small varied corpus, tiny trained tokenizers, the real artefacts."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from herd.tokenizer import TiktokenTokenizer, Tokenizer, load_tokenizer
from herd.tokenizer.sentencepiece_engine import INFILL_PIECES
from herd.tokenizer.train import train_tokenizer

INFILL = list(INFILL_PIECES)

# Hand-written probes of the cases tokenizers get wrong: scripts, digits, whitespace runs, emoji, code.
PROBES = [
    "This is a test sentence.",
    "The quick brown fox jumps over the lazy dog. I'm sure they'll see it's done; we'd've known.",
    "Llama 3 was trained on 15.6T tokens; 405B parameters, 128,256 ids, π ≈ 3.14159265358979.",
    "1234567890 000 0.001 -42 1e-5 2024-07-23 12:30:45 +1 (555) 010-9999 ٠١٢٣ 一二三",
    "敏捷的棕色狐狸跳过了懒狗。大型语言模型的分词器把文本切成子词。",
    "日本語の文章とひらがな、カタカナ。한국어 문장도 있습니다. Русский текст. Ελληνικά. עברית. العربية.",
    "emoji: 🙂🙃🦙🦙🦙 👩‍👩‍👧‍👦 🇫🇷 ✊🏽 and ZWJ sequences",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\n\tif x:\n\t\tpass\n",
    "    leading spaces\n\n\n\ntrailing spaces    \n  \t \r\n\r\nmixed\u00a0nbsp\u3000ideographic space",
    "   " * 50 + "x" + "\n" * 30,
    "caf\u00e9 vs cafe\u0301 (NFC vs NFD), ﬁ ligature, Ⅻ, ½, ², ℌ, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "MixedScriptsΑλφαBetaГаммаגимел中文english123数字",
    "<|begin_of_text|> <|eot_id|> <s> </s> [INST] <<SYS>> <|im_start|> plain text that looks special",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE DON'T WON'T",
    "",
    " ",
    "\n",
]


def _corpus() -> list[str]:
    """About 400 kB of varied documents: Python stdlib source (English prose + code) and generated lines."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for name in (
        "argparse.py",
        "textwrap.py",
        "json/decoder.py",
        "difflib.py",
        "calendar.py",
        "fractions.py",
    ):
        docs += [d for d in (stdlib / name).read_text(encoding="utf-8").split("\n\n") if d.strip()]
    rng = random.Random(0)
    for i in range(300):
        docs.append(
            f"Order {rng.randint(0, 10**9)} costs {rng.random() * 1000:.2f} € on {2000 + i % 25}-0{1 + i % 9}-1{i % 10}"
            f" — 日本語 {i} 中文 🙂 café naïve Ærøskøbing"
        )
    docs += PROBES
    return docs


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return _corpus()


@pytest.fixture(scope="session")
def llama3_model(llama3_tokenizer_dir: Path) -> Path:
    """Meta's Llama 3 ``tokenizer.model`` (tiktoken format)."""
    return llama3_tokenizer_dir / "tokenizer.model"


@pytest.fixture(scope="session")
def llama3(llama3_model: Path) -> TiktokenTokenizer:
    tokenizer = load_tokenizer(llama3_model)
    assert isinstance(tokenizer, TiktokenTokenizer)
    return tokenizer


@pytest.fixture(scope="session")
def llama2_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A tiny llama2-style SentencePiece model (vocab 500) with Code Llama's infilling pieces."""
    out = tmp_path_factory.mktemp("llama2")
    train_tokenizer(iter(corpus), out, style="llama2", vocab_size=500, specials=INFILL, heldout=0)
    return out


@pytest.fixture(scope="session")
def llama2(llama2_dir: Path) -> Tokenizer:
    return load_tokenizer(llama2_dir)


@pytest.fixture(scope="session")
def llama3_trained_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A tiny llama3-style byte-level BPE (1,000 ranks + 256 specials) in tiktoken format."""
    out = tmp_path_factory.mktemp("llama3")
    train_tokenizer(iter(corpus), out, style="llama3", vocab_size=1000, heldout=0)
    return out
