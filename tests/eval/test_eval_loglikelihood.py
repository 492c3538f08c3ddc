"""The log-likelihood scorer: equal to transformers' plain full forward, unchanged by batching and
padding, truncated like lm-eval, and tokenising like lm-eval's ``_encode_pair`` on real tokenizers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.errors import HerdError
from herd.eval.loglikelihood import Request, encode_pair, score_requests, score_texts
from herd.infer.engine import Engine, PaddedBatch
from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.model.transformer import Transformer
from herd.tokenizer import Tokenizer, load_tokenizer


def tiny_model(config: ModelConfig, seed: int = 0) -> Transformer:
    """A random model with peaked distributions (std 0.1), so that some continuations are greedy."""
    model = build_model(config, seed=seed)
    model.init_weights(std=0.1, seed=seed)
    return model.eval()


def random_ids(vocab: int, lengths: list[int], seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]


def mixed_requests(vocab: int) -> list[Request]:
    """Questions of 1 to 4 choices, contexts of 1 to 23 tokens (two share a start), continuations of 1 to 6 tokens."""
    contexts = random_ids(vocab, [7, 1, 23, 4, 12, 9], seed=1)
    # Few-shot prompts share their beginning: one batch's context may reuse the previous one's cache.
    contexts[0] = contexts[4][:10] + contexts[0]
    requests: list[Request] = []
    for q, context in enumerate(contexts):
        for continuation in random_ids(vocab, [1 + (q + k) % 6 for k in range(1 + q % 4)], seed=10 + q):
            requests.append((context, continuation))
    return requests


def reference_logprob(
    model: torch.nn.Module, context: list[int], continuation: list[int]
) -> tuple[float, bool]:
    """The plain way: one forward over context + continuation, log_softmax, gather; and greedy match."""
    with torch.no_grad():
        logits = model(torch.tensor([context + continuation])).logits[0].float()
    rows = logits[len(context) - 1 : len(context) + len(continuation) - 1]
    target = torch.tensor(continuation)
    logprob = torch.log_softmax(rows, dim=-1).gather(-1, target.unsqueeze(-1)).sum().item()
    return logprob, bool((rows.argmax(-1) == target).all())


@pytest.mark.parametrize("preset", ["llama2-tiny-gqa", "llama3.1-tiny"])
def test_logprobs_equal_transformers_full_forward(preset: str, tmp_path: Path) -> None:
    model = tiny_model(get_preset(preset))
    write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))
    reference = LlamaForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    requests = mixed_requests(model.config.vocab_size)
    # One continuation per question that is transformers' own greedy choice: is_greedy must say so.
    context = requests[0][0]
    with torch.no_grad():
        greedy = reference.generate(
            torch.tensor([context]), do_sample=False, max_new_tokens=3, pad_token_id=0
        )[0, len(context) :].tolist()
    requests.append((context, greedy))
    scored = score_requests(model, requests, batch_size=16)
    for (context, continuation), result in zip(requests, scored, strict=True):
        logprob, is_greedy = reference_logprob(reference, list(context), list(continuation))
        # 1e-5 per token: a sum of tens of fp32 log-probabilities, added in another order than transformers'
        assert result.logprob == pytest.approx(logprob, abs=1e-5 * len(continuation))
        assert result.is_greedy == is_greedy
        assert result.tokens == len(continuation)
    assert scored[-1].is_greedy


def test_batch_size_and_padding_do_not_change_logprobs() -> None:
    model = tiny_model(get_preset("llama3-tiny"))
    requests = mixed_requests(model.config.vocab_size)
    one = score_requests(model, requests, batch_size=1)
    sixteen = score_requests(model, requests, batch_size=16)
    # The same requests in another order and among other batch mates: other padding, other rows.
    reversed_ = score_requests(Engine(model), requests[::-1], batch_size=5)[::-1]
    for a, b, c in zip(one, sixteen, reversed_, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-5)
        assert c.logprob == pytest.approx(a.logprob, abs=1e-5)
        assert a.is_greedy == b.is_greedy == c.is_greedy


def test_each_context_runs_once_with_its_choices_from_the_copied_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model(get_preset("llama3-tiny"))
    requests = mixed_requests(model.config.vocab_size)  # 6 questions of 1, 2, 3, 4, 1, 2 choices
    prefills: list[tuple[int, int]] = []
    prefill = Engine.prefill

    def counting(self: Engine, batch: PaddedBatch, new_tokens: int, *, copies: int = 1) -> torch.Tensor:
        prefills.append((len(batch.pad), copies))
        return prefill(self, batch, new_tokens, copies=copies)

    monkeypatch.setattr(Engine, "prefill", counting)
    score_requests(model, requests, batch_size=16)
    # One prefill per number of choices, each context once (lm-eval's HF backend: once per choice).
    assert sorted(prefills, key=lambda p: p[1]) == [(2, 1), (2, 2), (1, 3), (1, 4)]
    prefills.clear()
    score_requests(model, requests, batch_size=3)  # at most 3 rows: a 4-choice question still goes whole
    assert sorted(prefills, key=lambda p: p[1]) == [(2, 1), (1, 2), (1, 2), (1, 3), (1, 4)]


def test_long_requests_keep_the_last_window_tokens_as_lm_eval_does(tmp_path: Path) -> None:
    model = tiny_model(get_preset("llama2-tiny").replace(max_seq_len=16))
    write_hf(tmp_path / "hf", CheckpointInfo(model.config), model_tensors(model))
    reference = LlamaForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    (context,) = random_ids(model.config.vocab_size, [30], seed=3)
    continuations = random_ids(model.config.vocab_size, [2, 5, 16], seed=4)
    scored = score_requests(model, [(context, c) for c in continuations])
    for continuation, result in zip(continuations, scored, strict=True):
        # lm-eval's input: the last window + 1 tokens of context + continuation, less the last one.
        kept = (context + continuation)[-(16 + 1) :]
        logprob, _ = reference_logprob(reference, kept[: -len(continuation)], continuation)
        assert result.logprob == pytest.approx(logprob, abs=1e-5)


def test_bad_requests_are_clear_errors() -> None:
    model = tiny_model(get_preset("llama2-tiny").replace(max_seq_len=16))
    with pytest.raises(HerdError, match="over the window"):
        score_requests(model, [([1, 2], list(range(3, 20)))])
    with pytest.raises(HerdError, match="at least one token"):
        score_requests(model, [([1, 2], [])])
    with pytest.raises(HerdError, match="outside the model's vocabulary"):
        score_requests(model, [([1, 2], [model.config.vocab_size])])
    with pytest.raises(HerdError, match="batch_size"):
        score_requests(model, [([1], [2])], batch_size=0)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def llama3_tokenizer(llama3_tokenizer_dir: Path) -> Tokenizer:
    return load_tokenizer(llama3_tokenizer_dir)


@pytest.mark.parametrize("which", ["smollm2_tokenizer", "llama3_tokenizer"])
@pytest.mark.parametrize("bos", [False, True])
def test_trailing_spaces_of_the_context_move_to_the_continuation(
    which: str, bos: bool, request: pytest.FixtureRequest
) -> None:
    tokenizer: Tokenizer = request.getfixturevalue(which)
    context_ids, continuation_ids = encode_pair(
        tokenizer, "Question: the capital?\nAnswer: ", "Paris", bos=bos
    )
    assert context_ids == tokenizer.encode("Question: the capital?\nAnswer:", bos=bos)
    assert continuation_ids == tokenizer.encode(" Paris")  # " Paris" as one word, not "Answer: " + "Paris"
    assert context_ids + continuation_ids == tokenizer.encode(
        "Question: the capital?\nAnswer: Paris", bos=bos
    )
    # Several trailing spaces and a newline all move; the continuation is what follows the context's ids
    # in the whole text's (Llama 3 merges ":\n", so the two need not concatenate to the whole).
    context_ids, continuation_ids = encode_pair(tokenizer, "A:\n  ", " x", bos=bos)
    assert context_ids == tokenizer.encode("A:", bos=bos)
    assert continuation_ids == tokenizer.encode("A:\n   x", bos=bos)[len(context_ids) :]


def test_a_token_across_the_boundary_belongs_to_the_continuation(smollm2_tokenizer: Tokenizer) -> None:
    """lm-eval's split: the whole text's ids after as many as the context's own (SmolLM2: "Th" | "The", "house")."""
    tokenizer = smollm2_tokenizer
    whole = tokenizer.encode("Thehouse")
    assert len(whole) == 2 and tokenizer.encode("Th") != whole[:1]
    assert encode_pair(tokenizer, "Th", "ehouse", bos=False) == (tokenizer.encode("Th"), whole[1:])
    with pytest.raises(
        HerdError, match="encodes to no tokens"
    ):  # "unbeliev" is as many tokens as "unbelievable"
        encode_pair(tokenizer, "unbeliev", "able", bos=False)


def test_an_empty_context_conditions_on_the_prefix_token(smollm2_tokenizer: Tokenizer) -> None:
    tokenizer = smollm2_tokenizer
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    assert encode_pair(tokenizer, "", " Paris", bos=False) == ([prefix], tokenizer.encode(" Paris"))


def test_text_pairs_score_as_their_token_pairs(smollm2_tokenizer: Tokenizer) -> None:
    tokenizer = smollm2_tokenizer
    model = tiny_model(get_preset("llama2-tiny").replace(vocab_size=tokenizer.vocab_size))
    pairs = [("The sky is ", "blue"), ("The sky is ", "green"), ("Two plus two:", " four")]
    scored = score_texts(model, tokenizer, pairs, add_bos=False)
    requests = [encode_pair(tokenizer, c, x, bos=False) for c, x in pairs]
    assert scored == score_requests(model, requests)
