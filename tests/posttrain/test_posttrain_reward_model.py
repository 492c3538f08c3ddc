"""The reward model (Llama 2 §3.2.2): a decoder with a scalar head, saved as transformers' sequence classifier.

The references are independent of the code under test: transformers'
``LlamaForSequenceClassification`` (loading what herd saves, and saving what
herd loads), herd's language model's own hidden states for the head's input,
and sequences scored one at a time for packed rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from herd.checkpoint.base import SIDE_FILES_EXTRA, CheckpointInfo
from herd.checkpoint.gguf import write_gguf
from herd.checkpoint.hf import INDEX_NAME, config_to_hf, write_hf
from herd.checkpoint.inspect import resolve_model
from herd.checkpoint.load import load_model, model_tensors, open_checkpoint
from herd.checkpoint.sequence_classification import (
    ARCHITECTURE,
    SCORE,
    SequenceClassificationReader,
    write_sequence_classification,
)
from herd.cli import main
from herd.errors import CheckpointError, ConfigError, InputError
from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.posttrain.reward_model import RewardModel, initial_score, last_real_index
from herd.tokenizer import Tokenizer, load_tokenizer

GQA = get_preset("llama3-tiny").replace(dim=64, n_layers=2, vocab_size=300)  # 4 heads, 2 kv heads
TIED = GQA.replace(tie_embeddings=True)
PAD = 299  # a dedicated pad id, as Llama 3's <|finetune_right_pad_id|>: no sequence ends with it
LENGTHS = [11, 4, 7]


def right_padded(config: ModelConfig, lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Random token rows of ``lengths``, right-padded with :data:`PAD` (which they never contain)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, PAD, (len(lengths), max(lengths)), generator=generator)
    tokens[torch.arange(max(lengths)) >= torch.tensor(lengths)[:, None]] = PAD
    return tokens


@pytest.fixture(scope="module", params=[GQA, TIED], ids=["untied", "tied"])
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RewardModel, Path]:
    rm = RewardModel.random(request.param, seed=3, pad_id=PAD).eval()
    return rm, rm.save_pretrained(tmp_path_factory.mktemp("rm") / "rm")


@torch.no_grad()
def test_transformers_loads_herd_reward_model_with_the_same_scores(saved: tuple[RewardModel, Path]) -> None:
    rm, path = saved
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["num_labels"] == 1 and config["pad_token_id"] == PAD
    hf = AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert type(hf).__name__ == "LlamaForSequenceClassification" and hf.config.num_labels == 1
    tokens = right_padded(rm.config, LENGTHS)
    theirs = hf(tokens).logits.squeeze(-1)
    ours = rm(tokens)
    assert ours.shape == (3,) and (ours - theirs).abs().max() <= 1e-4
    assert torch.equal(rm(tokens, torch.tensor(LENGTHS) - 1), ours)
    # a different sequence length changes the score: the reading position is not a constant
    assert (rm(tokens, torch.tensor(LENGTHS) - 2) - ours).abs().min() > 0


@torch.no_grad()
def test_round_trip_herd_disk_herd_is_exact(saved: tuple[RewardModel, Path]) -> None:
    rm, path = saved
    back = RewardModel.from_pretrained(path)
    assert back.pad_id == PAD and back.config == rm.config
    assert [name for name, _ in back.tensors()] == [name for name, _ in rm.tensors()]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(back.tensors(), rm.tensors(), strict=True))
    tokens = right_padded(rm.config, LENGTHS)
    assert torch.equal(back(tokens), rm(tokens))


@torch.no_grad()
def test_herd_reads_a_reward_model_transformers_saved(tmp_path: Path) -> None:
    hf_config = LlamaConfig(**config_to_hf(GQA), num_labels=1, pad_token_id=PAD)
    torch.manual_seed(0)
    hf = LlamaForSequenceClassification(hf_config).eval()
    hf.save_pretrained(tmp_path / "hf")
    rm = RewardModel.from_pretrained(tmp_path / "hf")
    tokens = right_padded(GQA, LENGTHS, seed=1)
    assert rm.pad_id == PAD
    assert (rm(tokens) - hf(tokens).logits.squeeze(-1)).abs().max() <= 1e-4


@torch.no_grad()
def test_sharded_reward_model_loads_in_both(tmp_path: Path) -> None:
    rm = RewardModel.random(GQA, seed=4, pad_id=PAD).eval()
    path = rm.save_pretrained(tmp_path / "rm", max_shard_bytes=40_000)
    files = set(json.loads((path / INDEX_NAME).read_text())["weight_map"].values())
    assert len(files) > 3 and not (path / "model.safetensors").exists()
    tokens = right_padded(GQA, LENGTHS)
    hf = AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert (hf(tokens).logits.squeeze(-1) - rm(tokens)).abs().max() <= 1e-4
    assert torch.equal(RewardModel.from_pretrained(path)(tokens), rm(tokens))


def test_last_real_index_is_transformers_rule() -> None:
    tokens = torch.tensor([[5, 6, 7, PAD], [PAD, 5, 6, 7], [5, PAD, 6, PAD], [PAD, PAD, PAD, PAD]])
    assert last_real_index(tokens, PAD).tolist() == [2, 3, 2, 0]
    assert last_real_index(tokens, None).tolist() == [3, 3, 3, 3]


@torch.no_grad()
@pytest.mark.parametrize("config", [GQA, TIED], ids=["untied", "tied"])
def test_from_pretrained_lm_scores_the_lm_hidden_state(config: ModelConfig, tmp_path: Path) -> None:
    """The decoder is the LM's, its vocabulary head is gone, and the score reads the LM's last hidden state."""
    lm = build_model(config, seed=7).eval()
    hf_dir = write_hf(tmp_path / "lm", CheckpointInfo(config), model_tensors(lm))
    gguf = write_gguf(tmp_path / "lm.gguf", CheckpointInfo(config), model_tensors(lm))
    tokens = right_padded(config, LENGTHS)
    last = torch.tensor(LENGTHS) - 1
    hidden = lm.hidden_states(tokens)[torch.arange(3), last]
    for source in (hf_dir, gguf, lm):
        rm = RewardModel.from_pretrained_lm(source, seed=1, pad_id=PAD).eval()
        assert not hasattr(rm.transformer, "output")
        lm_params = sum(p.numel() for p in lm.parameters())
        head = 0 if config.tie_embeddings else config.vocab_size * config.dim
        assert sum(p.numel() for p in rm.parameters()) == lm_params - head + config.dim
        assert torch.equal(rm.score.weight, initial_score(config, 1))
        expected = hidden @ rm.score.weight[0]
        assert (rm(tokens) - expected).abs().max() <= 1e-5, source
    assert lm.output.weight.shape == (config.vocab_size, config.dim)  # the live source keeps its head


@torch.no_grad()
def test_from_a_live_model_copies_its_weights() -> None:
    lm = build_model(GQA, seed=2)
    before = lm.tok_embeddings.weight.clone()
    rm = RewardModel.from_pretrained_lm(lm, dtype="bf16")
    assert rm.transformer.tok_embeddings.weight.dtype == rm.score.weight.dtype == torch.bfloat16
    rm.transformer.tok_embeddings.weight.zero_()
    assert torch.equal(lm.tok_embeddings.weight, before)


def test_head_initialisation_is_small_and_seeded() -> None:
    """N(0, (1/dim)²): the documented initialisation, so unit-RMS hidden states score with std 1/√dim."""
    config = get_preset("llama3-8b")
    weight = initial_score(config, seed=0)
    assert weight.shape == (1, 4096)
    assert abs(weight.std().item() * 4096 - 1) < 0.05
    assert torch.equal(weight, initial_score(config, seed=0)) and not torch.equal(
        weight, initial_score(config, 1)
    )
    hidden = torch.randn(2000, 4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hidden = hidden / hidden.pow(2).mean(-1, keepdim=True).sqrt()
    assert abs((hidden @ weight[0].double()).std().item() * 4096**0.5 - 1) < 0.1


@torch.no_grad()
def test_packed_rows_score_each_document_as_if_alone() -> None:
    """One prompt's ranked answers packed in one row (document ids) score as the pairs scored one by one."""
    rm = RewardModel.random(GQA, seed=5, pad_id=PAD).eval()
    generator = torch.Generator().manual_seed(9)
    prompt = torch.randint(0, PAD, (6,), generator=generator)
    answers = [torch.randint(0, PAD, (n,), generator=generator) for n in (3, 5, 2)]
    documents = [torch.cat([prompt, answer]) for answer in answers]
    row = torch.cat([*documents, torch.full((4,), PAD)])[None]
    ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate([*documents, torch.empty(4)])])[None]
    ends = torch.tensor([[8, 19, 27]])
    assert (torch.tensor([len(d) for d in documents]).cumsum(0) - 1).tolist() == ends[0].tolist()
    packed = rm(row, ends, document_ids=ids)
    lengths = [len(d) for d in documents]
    alone = torch.full((3, max(lengths)), PAD)
    for i, d in enumerate(documents):
        alone[i, : len(d)] = d
    assert packed.shape == (1, 3)
    assert (packed[0] - rm(alone)).abs().max() <= 1e-5
    # without document ids the later answers would see the earlier ones, and score otherwise
    assert (rm(row, ends)[0, 1:] - packed[0, 1:]).abs().min() > 1e-6


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    rm = RewardModel.random(GQA, pad_id=PAD)
    tokens = right_padded(rm.config, LENGTHS)
    with pytest.raises(InputError, match=r"outside 0\.\.10"):
        rm(tokens, torch.tensor([10, 11, 3]))
    with pytest.raises(InputError, match="need last_index"):
        rm(tokens, document_ids=torch.zeros_like(tokens))
    with pytest.raises(InputError, match=r"\(batch,\) or \(batch, k\) with batch 3"):
        rm(tokens, torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match="no pad_id"):
        RewardModel.random(GQA).save_pretrained(tmp_path / "nopad")
    with pytest.raises(ConfigError, match="pad_token_id 300 is not a token id"):
        RewardModel.random(GQA, pad_id=300).save_pretrained(tmp_path / "badpad")
    headless = [(name, tensor) for name, tensor in rm.tensors() if name != SCORE]
    with pytest.raises(CheckpointError, match=f"expected one {SCORE} among the tensors, got 0"):
        write_sequence_classification(tmp_path / "headless", CheckpointInfo(GQA), headless, pad_token_id=PAD)
    assert list(tmp_path.iterdir()) == []  # nothing staged is left behind
    lm = write_hf(tmp_path / "lm", CheckpointInfo(GQA), model_tensors(build_model(GQA)))
    with pytest.raises(CheckpointError, match=r"LlamaForCausalLM.*not a sequence classifier"):
        RewardModel.from_pretrained(lm)


def test_a_bad_head_is_refused(saved: tuple[RewardModel, Path], tmp_path: Path) -> None:
    import shutil

    rm, path = saved
    labels = shutil.copytree(path, tmp_path / "labels")
    config = json.loads((labels / "config.json").read_text())
    config |= {"id2label": {"0": "bad", "1": "good"}, "num_labels": 2}
    (labels / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="2 labels; a reward model has one"):
        SequenceClassificationReader(labels)
    wrong = RewardModel.random(rm.config, pad_id=PAD)
    wrong.score = torch.nn.Linear(rm.config.dim, 2, bias=False)
    with pytest.raises(
        CheckpointError, match=rf"{SCORE} has shape \(2, 64\) but the config implies \(1, 64\)"
    ):
        RewardModel.from_pretrained(wrong.save_pretrained(tmp_path / "wrong"))


def test_the_checkpoint_layer_opens_a_reward_model(
    saved: tuple[RewardModel, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """open_checkpoint reads the decoder and the shape-checked head; what needs a language model refuses
    a reward model in one line; model info sizes it."""
    rm, path = saved
    with open_checkpoint(path) as reader:
        assert isinstance(reader, SequenceClassificationReader) and reader.pad_token_id == PAD
        assert reader.names() == [name for name, _ in rm.tensors()] and reader.names()[-1] == SCORE
        assert torch.equal(reader.get(SCORE), rm.score.weight)
        assert reader.info.extras[SIDE_FILES_EXTRA] == []
    with pytest.raises(
        CheckpointError,
        match=r"rm: a reward model \(\w+\), not a language model; .*RewardModel\.from_pretrained$",
    ):
        load_model(path)
    assert main(["convert", str(path), str(tmp_path / "out"), "--to", "gguf", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"herd: error: {path}: a reward model ({ARCHITECTURE}); herd convert converts language models only"
    )
    assert not (tmp_path / "out").exists()
    config, dtype = resolve_model(str(path))
    assert config == rm.config.replace(name="rm") and dtype == "fp32"


@pytest.mark.slow
def test_tokenizer_travels_with_the_reward_model(llama3_tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = RewardModel.random(GQA, pad_id=PAD).save_pretrained(tmp_path / "rm", tokenizer=llama3_tokenizer)
    text = "Which answer is better? <|eot_id|>"
    assert load_tokenizer(path).encode(text, allow_special=True) == llama3_tokenizer.encode(
        text, allow_special=True
    )
