"""Fixtures of the post-training tests: the three chat formats on real tokenizers and a tiny trained one.

Llama 3's format runs on Meta's tokenizer and ChatML on SmolLM2's vocabulary
and template (the packages tests/conftest.py reads); Llama 2's on a tiny
SentencePiece model trained here, since no package ships Meta's.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from herd.tokenizer import Tokenizer, load_tokenizer
from herd.tokenizer.chat import ChatFormat, JinjaChat, Llama2Chat, Llama3Chat
from herd.tokenizer.train import train_tokenizer


@pytest.fixture(scope="session")
def llama2_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A llama2-style SentencePiece model (vocab 500) trained on a page of the standard library."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text(encoding="utf-8")
    out = tmp_path_factory.mktemp("llama2")
    train_tokenizer(
        iter(d for d in text.split("\n\n") if d.strip()), out, style="llama2", vocab_size=500, heldout=0
    )
    return load_tokenizer(out)


@pytest.fixture(scope="session")
def llama3_tokenizer(llama3_tokenizer_dir: Path) -> Tokenizer:
    return load_tokenizer(llama3_tokenizer_dir / "tokenizer.model")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def chat_formats(
    llama2_tokenizer: Tokenizer, llama3_tokenizer: Tokenizer, smollm2_tokenizer: Tokenizer
) -> dict[str, ChatFormat]:
    return {
        "llama2": Llama2Chat(llama2_tokenizer),
        "llama3": Llama3Chat(llama3_tokenizer),
        "chatml": JinjaChat(smollm2_tokenizer),
    }
