"""The trainer's contract with an Objective: the step's loss and gradient are those of the global mean per loss unit.

A toy objective trains on the pretraining windows with part of the targets
ignored, so each micro-batch holds a different number of loss units (as SFT's
answer tokens do). Its first step is compared with a hand computation: plain
``F.cross_entropy`` on full logits of an independent copy of the initial model,
summed over the unignored targets of the whole global batch and divided by
their number, and with the same step split into more micro-batches. Also:
which decoders of a model the trainer shards, and the full-weight copy that
generation runs on in a sharded run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config_dict
from herd.model.build import build_model
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.presets import get_preset
from herd.train.config import config_from_dict
from herd.train.dataset import Batch
from herd.train.loop import Trainer
from herd.train.objective import BatchLayout, LossTerms, decoder, decoders, full_copy, is_sharded, unwrap
from herd.train.pretrain_objective import PretrainObjective


class SparseTargets(PretrainObjective):
    """Pretraining windows whose targets divisible by 3 are ignored; counts extra statistics too."""

    def micro_batches(self) -> list[Batch]:
        batches = super().micro_batches()
        for batch in batches:
            batch.targets = batch.targets.masked_fill(batch.targets % 3 == 0, IGNORE_INDEX)
        return batches

    def count(self, batch: Batch) -> int:
        return int((batch.targets != IGNORE_INDEX).sum())

    def loss(self, model: torch.nn.Module, batch: Batch) -> LossTerms:
        terms = super().loss(model, batch)
        return LossTerms(terms.loss_sum, {"odd_targets": float((batch.targets % 2 == 1).sum())})


def _first_step(dataset_dir: Path, out: Path, micro_batch_size: int) -> tuple[Trainer, float, list[Batch]]:
    raw = tiny_config_dict(
        dataset_dir, out, train={"steps": 1, "micro_batch_size": micro_batch_size}, optim={"grad_clip": 1e9}
    )
    trainer = Trainer(config_from_dict(raw), objective=SparseTargets)
    drawn: list[Batch] = []
    original = trainer.objective.micro_batches

    def recorded() -> list[Batch]:
        drawn.extend(original())
        return drawn

    trainer.objective.micro_batches = recorded  # type: ignore[method-assign]
    loss, _, _ = trainer.train_step()
    return trainer, loss, drawn


def test_a_step_is_the_global_mean_per_loss_unit(dataset_dir: Path, tmp_path: Path) -> None:
    whole, loss, batches = _first_step(dataset_dir, tmp_path / "one", micro_batch_size=8)
    split, split_loss, split_batches = _first_step(dataset_dir, tmp_path / "four", micro_batch_size=2)
    counts = [int((b.targets != IGNORE_INDEX).sum()) for b in split_batches]
    assert len(set(counts)) > 1  # the micro-batches weigh differently: a per-batch mean would be wrong

    reference = build_model(whole.model_config, seed=0)  # the seeded init the trainer starts from
    inputs = torch.cat([b.inputs for b in batches])
    targets = torch.cat([b.targets for b in batches])
    documents = torch.cat([b.document_ids for b in batches])
    logits = reference(inputs, document_ids=documents)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    expected.backward()

    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert split_loss == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(torch.cat([b.targets for b in split_batches]), targets)
    odd = float((targets % 2 == 1).sum()) / int((targets != IGNORE_INDEX).sum())
    assert whole.step_stats == pytest.approx({"odd_targets": odd})
    for trainer in (whole, split):
        got = dict(trainer.model.named_parameters())
        for name, param in reference.named_parameters():
            torch.testing.assert_close(got[name].grad, param.grad, rtol=1e-4, atol=1e-7, msg=name)
        trainer.close()


def test_batch_layout_splits_a_step_over_ranks_and_micro_batches() -> None:
    items = list(range(12))
    ranks = [BatchLayout(12, 2, rank, 3).split(items) for rank in range(3)]
    assert ranks == [[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9], [10, 11]]]
    assert BatchLayout(12, 2, 0, 3).accumulation == 2


def test_decoders_are_the_transformers_of_the_trained_module() -> None:
    """One for a plain model or a wrapper (unchanged behaviour); both for a module holding two, as PPO's does."""
    config = get_preset("llama3-tiny").replace(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64)
    policy, value = build_model(config, seed=0), build_model(config, seed=1)
    pair = torch.nn.ModuleDict({"transformer": policy, "value": torch.nn.ModuleDict({"transformer": value})})
    assert decoders(policy) == [policy] and decoder(policy) is policy
    assert decoders(pair) == [policy, value] and decoder(pair) is policy
    with pytest.raises(TypeError, match="holds no Transformer"):
        decoders(torch.nn.Linear(2, 2))


def test_full_copy_gives_a_frozen_eval_copy_with_the_same_weights() -> None:
    """What generation runs on in a sharded run; unsharded, the copy is plain (nothing to gather)."""
    config = get_preset("llama3-tiny").replace(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64)
    model = build_model(config, seed=0)
    assert not is_sharded(model) and unwrap(model) is model
    copy = full_copy(model, build_model(config, seed=1))
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())
    for (name, ours), theirs in zip(copy.named_parameters(), model.parameters(), strict=True):
        assert torch.equal(ours, theirs), name
        assert ours.data_ptr() != theirs.data_ptr(), name
