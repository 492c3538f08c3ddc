"""Key retrieval (Code Llama §3.3, Llama 3 §5.2): the key sits at the requested depth, prompts have the
requested length and are deterministic, answers are scored by their first number, and the heatmap is a PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.config import from_dict, load_toml
from herd.errors import ConfigError
from herd.eval.key_retrieval import (
    CHAT_ROOM,
    FILLER,
    NEEDLE,
    KeyRetrievalSpec,
    accuracy_grid,
    build_probes,
    evaluate_key_retrieval,
    plot_key_retrieval,
    retrieved,
    usable_lengths,
)
from herd.eval.result import Metric, TaskResult
from herd.infer.engine import Engine
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.tokenizer import Tokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
SPEC = KeyRetrievalSpec(name="kr", lengths=[128, 300, 700], depths=[0.0, 0.3, 0.5, 1.0], trials=2)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


def test_config_loads_and_bad_grids_are_refused() -> None:
    spec = from_dict(KeyRetrievalSpec, load_toml(ROOT / "configs/eval/key_retrieval.toml"))
    assert spec.kind == "key_retrieval" and max(spec.lengths) <= 8192 and spec.trials >= 1
    for bad in ({"depths": [1.5]}, {"lengths": []}, {"trials": 0}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError, match="'kr'"):
            from_dict(KeyRetrievalSpec, {"name": "kr", **bad})


def test_lengths_depths_and_determinism(smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    probes = build_probes(SPEC, tok, context=8192)
    assert len(probes) == 3 * 4 * 2
    assert probes == build_probes(SPEC, tok, context=8192)  # same keys, same prompts
    assert len({p.key for p in probes}) == len(probes) and all(10_000 <= p.key <= 99_999 for p in probes)
    sentence = max(len(tok.encode(" " + s)) for s in FILLER)
    for probe in probes:
        ids = tok.encode(probe.prompt)
        assert probe.tokens == len(ids) <= probe.length
        assert probe.length - probe.tokens <= sentence + 2  # one sentence short at most (a few %)
        needle = NEEDLE.format(key=probe.key)
        assert probe.prompt.count(needle) == 1 and probe.prompt.count(str(probe.key)) == 2
        # The needle's token position, as a fraction of the filler's tokens.
        start = probe.prompt.index("\n\n") + 2
        end = probe.prompt.rindex("\n\n")
        before = len(tok.encode(probe.prompt[start : probe.prompt.index(needle)]))
        filler = len(tok.encode(probe.prompt[start:end])) - len(tok.encode(needle))
        assert abs(before - probe.depth * filler) <= sentence + 1, probe.id


def test_lengths_are_capped_by_the_window(smollm2_tokenizer: Tokenizer) -> None:
    probes = build_probes(SPEC, smollm2_tokenizer, context=256)
    assert sorted({p.length for p in probes}) == [128, 256 - SPEC.max_new_tokens]
    with pytest.raises(ConfigError, match="shorter than the prompt without filler"):
        build_probes(KeyRetrievalSpec(name="kr", lengths=[20]), smollm2_tokenizer, context=8192)


def test_scoring_by_hand() -> None:
    assert retrieved(" 12345.", 12345)
    assert retrieved(" The pass key is 12345", 12345)
    assert not retrieved(" 1234", 12345)
    assert not retrieved(" 123456", 12345)
    assert not retrieved(" 12,345", 12345)
    assert not retrieved(" 54321 or 12345", 12345)
    assert not retrieved(" I do not know", 12345)


def test_tiny_model_run_and_heatmap(smollm2_tokenizer: Tokenizer, tmp_path: Path) -> None:
    config = get_preset("llama2-tiny").replace(vocab_size=smollm2_tokenizer.vocab_size, max_seq_len=512)
    engine = Engine(build_model(config, seed=0).eval())
    done: list[int] = []
    spec = KeyRetrievalSpec(name="kr", lengths=[100, 200, 1000], depths=[0.0, 1.0], max_new_tokens=4)
    result = evaluate_key_retrieval(spec, engine, smollm2_tokenizer, batch_size=3, progress=done.append)
    assert result.kind == "key_retrieval" and result.n == 3 * 2 * 2 == sum(done) and done[0] == 3
    assert [m.name for m in result.metrics] == ["accuracy"]
    assert result.primary.value == sum(r["hit"] for r in result.examples) / result.n
    assert [r["id"] for r in result.examples[:2]] == ["kr/L100/d0/t0", "kr/L100/d1/t0"]
    assert {r["length"] for r in result.examples} == {100, 200, 512 - 4}
    limited = evaluate_key_retrieval(spec, engine, smollm2_tokenizer, limit=5)
    assert [r["id"] for r in limited.examples] == [r["id"] for r in result.examples[:5]]
    chat = evaluate_key_retrieval(spec, engine, smollm2_tokenizer, limit=2, chat=True)  # ChatML user turns
    assert chat.n == 2 and usable_lengths(spec, 512, chat=True) == [100, 200, 512 - 4 - CHAT_ROOM]
    png = plot_key_retrieval(result, tmp_path / "key_retrieval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_accuracy_grid_by_hand() -> None:
    examples = [
        {"id": "a", "length": 512, "depth": 0.5, "hit": True},
        {"id": "b", "length": 512, "depth": 0.5, "hit": False},
        {"id": "c", "length": 256, "depth": 0.5, "hit": True},
        {"id": "d", "length": 256, "depth": 0.0, "hit": False},
    ]
    accuracy = Metric.proportion("accuracy", [e["hit"] for e in examples])
    lengths, depths, grid = accuracy_grid(TaskResult("kr", "key_retrieval", 4, (accuracy,), examples))
    assert (lengths, depths) == ([256, 512], [0.0, 0.5])
    assert grid == [[0.0, None], [1.0, 0.5]]
