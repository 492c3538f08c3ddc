"""Perplexity: lm-eval's rolling windows, the sum of a plain forward (or of hand-made sliding windows), the
wikitext metrics as lm-eval aggregates them, and SmolLM2's bits per byte against transformers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
from lm_eval.api.task import Task
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.config import from_dict, load_toml
from herd.errors import ConfigError, InputError
from herd.eval.perplexity import (
    PerplexitySpec,
    count_words,
    evaluate_perplexity,
    perplexity_metrics,
    rolling_loglikelihood,
    rolling_windows,
)
from herd.infer.byte_tokenizer import ByteTokenizer
from herd.infer.completion import default_add_bos
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.model.build import build_model
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer

CONFIG = Path(__file__).parents[2] / "configs" / "eval" / "bits_per_byte.toml"
TEXT = "Every spring the herders drove their llamas up the old stone path to the high pasture."


def lm_eval_windows(
    tokens: list[int], prefix: int, max_len: int, stride: int
) -> list[tuple[list[int], list[int]]]:
    """lm-eval's own windows: a stride of s predicts s tokens a window, i.e. context_len = L - s + 1."""
    context_len = max_len - (stride or max_len) + 1
    return [
        make_disjoint_window(w)
        for w in get_rolling_token_windows(
            tokens, prefix_token=prefix, max_seq_len=max_len, context_len=context_len
        )
    ]


def test_windows_of_the_harness_docstring_example() -> None:
    # lm-eval's LM.loglikelihood_rolling docstring: tokens 0..9, prefix BOS, max length 4.
    bos = 100
    assert rolling_windows(list(range(10)), bos, 4) == [
        ([bos], [0, 1, 2, 3]),
        ([3], [4, 5, 6, 7]),
        ([5, 6, 7], [8, 9]),  # the last window still reads a full window of 4 inputs: 5 6 7 8
    ]
    assert rolling_windows([], bos, 4) == []


@pytest.mark.parametrize(
    ("n", "max_len", "stride"),
    [(1, 4, 0), (4, 4, 0), (5, 4, 0), (8, 4, 0), (9, 4, 0), (10, 4, 1), (10, 4, 3), (10, 4, 4), (37, 8, 5)],
)
def test_windows_equal_lm_eval_hand_cases(n: int, max_len: int, stride: int) -> None:
    tokens = list(range(1000, 1000 + n))
    assert rolling_windows(tokens, 7, max_len, stride) == lm_eval_windows(tokens, 7, max_len, stride)


def test_windows_equal_lm_eval_over_every_small_length_window_and_stride() -> None:
    for max_len in range(1, 10):
        for stride in range(max_len + 1):
            for n in range(3 * max_len + 4):
                tokens = list(range(500, 500 + n))
                windows = rolling_windows(tokens, 1, max_len, stride)
                assert windows == lm_eval_windows(tokens, 1, max_len, stride), (n, max_len, stride)
                # Every token scored once, each window within the model's input.
                assert [t for _, continuation in windows for t in continuation] == tokens
                assert all(len(c) + len(x) <= max_len + 1 for c, x in windows)


def test_a_stride_outside_the_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="stride"):
        rolling_windows([1, 2, 3], 0, 4, 5)
    with pytest.raises(ConfigError, match="stride"):
        PerplexitySpec(name="t", path="x.txt", stride=-1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Transformer, LlamaForCausalLM]:
    """A random llama2-tiny with a 32-token context, and transformers' LlamaForCausalLM on its weights."""
    model = build_model(get_preset("llama2-tiny").replace(max_seq_len=32), seed=0)
    model.init_weights(std=0.1, seed=0)
    model.eval()
    folder = tmp_path_factory.mktemp("hf")
    write_hf(folder, CheckpointInfo(model.config), model_tensors(model))
    return model, LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()


def reference_sum(reference: LlamaForCausalLM, inputs: list[int], targets: list[int]) -> float:
    """Summed log-probability of ``targets`` at the last positions of one plain forward over ``inputs``."""
    with torch.no_grad():
        logits = reference(torch.tensor([inputs])).logits[0].float()
    rows = torch.log_softmax(logits[len(inputs) - len(targets) :], dim=-1)
    return rows.gather(-1, torch.tensor(targets).unsqueeze(-1)).sum().item()


def test_a_text_that_fits_scores_as_one_full_forward(tiny: tuple[Transformer, LlamaForCausalLM]) -> None:
    model, reference = tiny
    tokenizer = ByteTokenizer()
    text = "llamas graze"  # 12 bytes + BOS: 13 tokens, one window
    logprob, tokens = rolling_loglikelihood(model, tokenizer, text)
    ids = tokenizer.encode(
        text, bos=True
    )  # the byte tokenizer starts documents with BOS, as lm-eval's HF model
    assert tokens == len(ids) == 13
    # The prefix BOS, then every token of the document (its own BOS first) predicted in one forward.
    assert logprob == pytest.approx(reference_sum(reference, [tokenizer.bos_id, *ids[:-1]], ids), abs=1e-4)


@pytest.mark.parametrize("stride", [0, 3, 32])
def test_sliding_windows_sum_as_computed_by_hand(
    tiny: tuple[Transformer, LlamaForCausalLM], stride: int
) -> None:
    model, reference = tiny
    tokenizer = ByteTokenizer()
    text = "The herders drove the llamas up to the high pasture, singing!"  # 62 tokens (BOS too), window 32
    logprob, tokens = rolling_loglikelihood(Engine(model), tokenizer, text, stride=stride, batch_size=2)
    # The Hugging Face guide's loop: windows of at most 32 inputs ending where the next `stride` targets end.
    sequence = [tokenizer.bos_id, *tokenizer.encode(text, bos=True)]
    expected, done, step = 0.0, 0, stride or 32
    end = min(32, len(sequence) - 1)
    while done < len(sequence) - 1:
        window = sequence[max(0, end - 32) : end]
        expected += reference_sum(reference, window, sequence[done + 1 : end + 1])
        done, end = end, min(end + step, len(sequence) - 1)
    assert tokens == len(sequence) - 1 == 62
    assert logprob == pytest.approx(expected, abs=1e-4)


def test_metrics_by_hand_and_as_lm_eval_aggregates_them(
    tiny: tuple[Transformer, LlamaForCausalLM], tmp_path: Path
) -> None:
    bpb, byte_ppl, word_ppl = perplexity_metrics(-100.0, 50, 10)
    assert (bpb.name, byte_ppl.name, word_ppl.name) == ("bits_per_byte", "byte_perplexity", "word_perplexity")
    assert bpb.value == pytest.approx(2 / math.log(2))
    assert byte_ppl.value == pytest.approx(math.exp(2))
    assert word_ppl.value == pytest.approx(math.exp(10))
    assert bpb.ci is None
    # lm-eval's word count: whitespace runs split, so a trailing newline adds an empty "word".
    for text in ["a b", "a  b\n", " lead", "", "tab\tand\nnew line"]:
        assert count_words(text) == Task.count_words(text)
    assert count_words("a b\n") == 3

    documents = ["Llamas hum.\n", "The path is steep; the air is thin.", "Ñandú y llama — 2 words?"]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"page": d}) + "\n" for d in documents), "utf-8")
    spec = PerplexitySpec(name="docs", path=str(data), field="page")
    finished: list[int] = []
    result = evaluate_perplexity(spec, Engine(tiny[0]), ByteTokenizer(), progress=finished.append)
    assert (result.task, result.kind, result.n, finished) == ("docs", "perplexity", 3, [1, 1, 1])
    assert result.primary.name == "bits_per_byte"
    lls = [e["logprob"] for e in result.examples]
    n_bytes = [len(d.encode("utf-8")) for d in documents]
    assert [e["bytes"] for e in result.examples] == n_bytes
    assert [e["id"] for e in result.examples] == ["docs/0", "docs/1", "docs/2"]
    # lm-eval's aggregations over (loglikelihood, bytes or words) pairs: sums first, then the ratio.
    assert result.metric("bits_per_byte").value == pytest.approx(
        bits_per_byte(list(zip(lls, n_bytes, strict=True)))
    )
    assert result.metric("byte_perplexity").value == pytest.approx(
        weighted_perplexity(list(zip(lls, n_bytes, strict=True)))
    )
    words = [Task.count_words(d) for d in documents]
    assert result.metric("word_perplexity").value == pytest.approx(
        weighted_perplexity(list(zip(lls, words, strict=True)))
    )
    assert evaluate_perplexity(spec, tiny[0], ByteTokenizer(), limit=2).n == 2


def test_documents_and_errors(tiny: tuple[Transformer, LlamaForCausalLM], tmp_path: Path) -> None:
    model = tiny[0]
    text = tmp_path / "story.txt"
    text.write_bytes(b"Line one.\r\nLine two.\n")  # one document, its bytes as they are
    result = evaluate_perplexity(
        PerplexitySpec(name="s", path="story.txt"), model, ByteTokenizer(), data_dir=tmp_path
    )
    assert result.n == 1 and result.examples[0]["bytes"] == 21 and result.examples[0]["tokens"] == 22
    with pytest.raises(ConfigError, match="chat"):
        evaluate_perplexity(PerplexitySpec(name="s", path=str(text)), model, ByteTokenizer(), chat=True)
    with pytest.raises(InputError, match="no such text file"):
        evaluate_perplexity(PerplexitySpec(name="s", path=str(tmp_path / "none.txt")), model, ByteTokenizer())
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "fine"}\n{"body": "no text field"}\n', "utf-8")
    with pytest.raises(InputError, match=r"row 1: no field 'text'"):
        evaluate_perplexity(PerplexitySpec(name="r", path=str(rows)), model, ByteTokenizer())
    rows.write_text('{"text": 3}\n', "utf-8")
    with pytest.raises(InputError, match="is not text"):
        evaluate_perplexity(PerplexitySpec(name="r", path=str(rows)), model, ByteTokenizer())


@pytest.fixture(scope="module")
def smollm2(
    smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Transformer, Tokenizer, LlamaForCausalLM]:
    model, tokenizer = load_for_inference(str(smollm2_gguf))
    folder = tmp_path_factory.mktemp("smollm2-hf")
    write_hf(folder, CheckpointInfo(model.config), model_tensors(model))
    return model, tokenizer, LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()


def test_smollm2_bits_per_byte_equals_transformers(
    smollm2: tuple[Transformer, Tokenizer, LlamaForCausalLM], tmp_path: Path
) -> None:
    model, tokenizer, reference = smollm2
    (tmp_path / "short.txt").write_text(TEXT, "utf-8")
    result = evaluate_perplexity(
        PerplexitySpec(name="short", path=str(tmp_path / "short.txt")), model, tokenizer
    )
    ids = tokenizer.encode(TEXT, bos=default_add_bos(tokenizer))  # SmolLM2: no BOS before plain text
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    logprob = reference_sum(reference, [prefix, *ids[:-1]], ids)  # one window: the whole text in one forward
    assert result.examples[0]["tokens"] == len(ids)
    assert result.primary.value == pytest.approx(-logprob / (len(TEXT) * math.log(2)), rel=1e-4)
    assert 0.3 < result.primary.value < 3.0  # a trained model on plain English: about a bit per byte


def test_the_shipped_config_scores_its_text(
    tiny: tuple[Transformer, LlamaForCausalLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(CONFIG.parents[2])  # the config names its text from the repository root
    spec = from_dict(PerplexitySpec, load_toml(CONFIG))
    result = evaluate_perplexity(spec, tiny[0], ByteTokenizer())
    document = Path(spec.path).read_bytes()
    assert result.n == 1 and result.examples[0]["bytes"] == len(document)
    assert result.examples[0]["tokens"] == len(document) + 1  # the byte tokenizer: a token a byte, and BOS
