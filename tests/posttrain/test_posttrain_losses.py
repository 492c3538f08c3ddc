"""herd.posttrain.losses against float64 hand computations (values and gradients) and TRL's trainers.

The float64 tests always run. The TRL tests call TRL's own loss code (the
reward trainer's ``compute_loss``, the DPO trainer's ``_compute_loss`` on a
transformers copy of a tiny herd model with TRL's fused log-prob head) with
a stand-in for the trainer object; they are skipped when TRL is not
installed (tested with trl 1.16.0).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from herd.errors import ConfigError, InputError
from herd.model.build import build_model
from herd.model.cross_entropy import IGNORE_INDEX
from herd.model.presets import get_preset
from herd.posttrain.data import RATINGS, next_token_targets
from herd.posttrain.losses import (
    DPO_BETA,
    DPO_NLL_WEIGHT,
    PPO_CLIP,
    PPO_KL_BETA,
    PPO_KL_BETA_LARGE,
    PPO_VALUE_WEIGHT,
    SAFETY_THRESHOLD,
    chunked_sequence_logprobs,
    chunked_token_logprobs,
    dpo_loss,
    kl_penalty_rewards,
    llama2_reward,
    penalize_unfinished,
    ppo_policy_loss,
    ppo_value_loss,
    rating_margins,
    reward_accuracy,
    reward_loss,
    sequence_logprobs,
    token_logprobs,
)


def softplus64(x: float) -> float:
    """log(1 + e^x) in float64 without overflow: -log σ(-x)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid64(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def leaf(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


def assert_values(got: torch.Tensor, expected: list[float] | float, tol: float = 1e-5) -> None:
    torch.testing.assert_close(
        got.detach().double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=tol
    )


# --- reward model --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "small", "large"])
def test_reward_loss_and_gradient_against_float64(kind: str) -> None:
    """``-log σ(c − r − m)`` averaged, and its gradient ``∓σ(−x)/n``, including far-apart scores."""
    g = torch.Generator().manual_seed(0)
    n = 16
    chosen = [*(torch.randn(n, generator=g, dtype=torch.float64) * 3).tolist(), 40.0, -40.0]
    rejected = [*(torch.randn(n, generator=g, dtype=torch.float64) * 3).tolist(), -40.0, 40.0]
    ratings = [RATINGS[i % 4] for i in range(n + 1)] + [None]
    margin = {"none": [0, 0, 0, 0], "small": [1, 2 / 3, 1 / 3, 0], "large": [3, 2, 1, 0]}[kind]
    m = [0.0 if r is None else margin[RATINGS.index(r)] for r in ratings]
    x = [c - r - mm for c, r, mm in zip(chosen, rejected, m, strict=True)]
    expected = sum(softplus64(-v) for v in x) / len(x)
    c, r = leaf(chosen), leaf(rejected)
    loss = reward_loss(c, r, rating_margins(ratings, kind))
    loss.backward()
    assert loss.dtype == torch.float32
    assert_values(loss, expected)
    assert_values(c.grad, [-sigmoid64(-v) / len(x) for v in x])
    assert_values(r.grad, [sigmoid64(-v) / len(x) for v in x])


def test_margins_are_llama2_table_27() -> None:
    ratings = [*RATINGS, None]
    assert rating_margins(ratings, "small").tolist() == pytest.approx([1, 2 / 3, 1 / 3, 0, 0])
    assert rating_margins(ratings, "large").tolist() == [3, 2, 1, 0, 0]
    assert rating_margins(ratings).tolist() == [0, 0, 0, 0, 0]
    with pytest.raises(ConfigError, match="unknown reward margin 'huge'"):
        rating_margins(ratings, "huge")
    with pytest.raises(InputError, match="unknown preference rating 'much_better'"):
        rating_margins(["much_better"], "small")


def test_reward_accuracy_counts_by_rating() -> None:
    chosen = torch.tensor([1.0, 0.0, 2.0, 3.0, 5.0])
    rejected = torch.tensor([0.0, 1.0, 2.0, 1.0, 4.0])  # the third is a tie: not correct
    ratings = ["better", "better", "slightly_better", None, "significantly_better"]
    assert reward_accuracy(chosen, rejected, ratings) == {
        "all": (3, 5),
        "significantly_better": (1, 1),
        "better": (1, 2),
        "slightly_better": (0, 1),
    }


class _OneProcess:
    """The accelerator a TRL trainer reads, for one process: gathering returns the tensor."""

    device = torch.device("cpu")

    @staticmethod
    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather


def _trainer_state(**attributes: Any) -> SimpleNamespace:
    """A stand-in ``self`` for a TRL trainer's loss method: the attributes it reads, nothing else."""
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_OneProcess(),
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        **attributes,
    )


def _trl_config(config_class: str, tmp_path: Path, **kwargs: Any) -> Any:
    trl = pytest.importorskip("trl", reason="TRL not installed: pip install trl==1.16.0 for the comparison")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(trl, config_class)(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kwargs)


def test_reward_loss_matches_trl(tmp_path: Path) -> None:
    """TRL's ``RewardTrainer.compute_loss`` on the same scores and margins: same loss and gradients."""
    args = _trl_config("RewardConfig", tmp_path)
    from trl.trainer.reward_trainer import RewardTrainer

    g = torch.Generator().manual_seed(1)
    scores = (torch.randn(2, 12, generator=g) * 2).requires_grad_()
    ratings = [RATINGS[i % 4] for i in range(12)]
    margin = rating_margins(ratings, "large")

    def reward_head(**inputs: torch.Tensor) -> SimpleNamespace:  # the model: chosen rows, then rejected
        return SimpleNamespace(logits=scores.reshape(-1, 1))

    inputs = {"attention_mask": torch.ones(24, 5, dtype=torch.long), "margin": margin}
    trl_loss = RewardTrainer.compute_loss(_trainer_state(args=args), reward_head, inputs)
    (trl_grad,) = torch.autograd.grad(trl_loss, scores)
    ours = reward_loss(scores[0], scores[1], margin)
    (our_grad,) = torch.autograd.grad(ours, scores)
    torch.testing.assert_close(ours, trl_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(our_grad, trl_grad, atol=1e-7, rtol=1e-6)


# --- DPO -----------------------------------------------------------------------------------------


def test_dpo_loss_gradient_and_logged_values_against_float64() -> None:
    """Loss, gradients and rewards of DPO plus Llama 3's per-token NLL term, by hand in float64."""
    g = torch.Generator().manual_seed(2)
    n = 8
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = (
        (-40 + 15 * torch.randn(n, generator=g, dtype=torch.float64)).tolist() for _ in range(4)
    )
    tokens = torch.randint(5, 40, (n,), generator=g).tolist()
    beta, weight = DPO_BETA, DPO_NLL_WEIGHT
    x = [
        beta * ((pc - pr) - (rc - rr))
        for pc, pr, rc, rr in zip(policy_chosen, policy_rejected, ref_chosen, ref_rejected, strict=True)
    ]
    preference = sum(softplus64(-v) for v in x) / n
    nll = -sum(policy_chosen) / sum(tokens)
    pc, pr = leaf(policy_chosen), leaf(policy_rejected)
    out = dpo_loss(
        pc,
        pr,
        torch.tensor(ref_chosen),
        torch.tensor(ref_rejected),
        beta,
        nll_weight=weight,
        chosen_tokens=torch.tensor(tokens),
    )
    out.loss.backward()
    assert_values(out.preference_loss, preference)
    assert out.nll is not None
    assert_values(out.nll, nll)
    assert_values(out.loss, preference + weight * nll)
    assert_values(pc.grad, [-beta * sigmoid64(-v) / n - weight / sum(tokens) for v in x])
    assert_values(pr.grad, [beta * sigmoid64(-v) / n for v in x])
    chosen_rewards = [beta * (p - r) for p, r in zip(policy_chosen, ref_chosen, strict=True)]
    rejected_rewards = [beta * (p - r) for p, r in zip(policy_rejected, ref_rejected, strict=True)]
    assert_values(out.chosen_rewards, chosen_rewards)
    assert_values(out.rejected_rewards, rejected_rewards)
    margins = [c - r for c, r in zip(chosen_rewards, rejected_rewards, strict=True)]
    assert_values(out.reward_margins, margins)
    assert out.reward_accuracy.item() == pytest.approx(sum(m > 0 for m in margins) / n)
    assert 0 < out.reward_accuracy.item() < 1
    metrics = out.metrics()
    assert metrics["rewards/margin"] == pytest.approx(sum(margins) / n, rel=1e-5)
    assert metrics["nll"] == pytest.approx(nll, rel=1e-5)


def test_dpo_without_nll_is_the_preference_loss() -> None:
    out = dpo_loss(leaf([-3.0]), leaf([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.0]))
    assert out.nll is None and out.loss is out.preference_loss
    assert_values(out.loss, softplus64(-DPO_BETA * 2.0))
    assert "nll" not in out.metrics()


def test_dpo_settings_are_checked() -> None:
    x = torch.zeros(2)
    with pytest.raises(ConfigError, match="beta must be positive"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ConfigError, match="chosen_tokens"):
        dpo_loss(x, x, x, x, nll_weight=0.2)


# --- log-probabilities ---------------------------------------------------------------------------


def _targets(shape: tuple[int, int], vocab: int, seed: int) -> torch.Tensor:
    """Random targets with about a third ignored, and the last row entirely ignored."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, vocab, shape, generator=g)
    targets[torch.rand(shape, generator=g) < 0.35] = IGNORE_INDEX
    targets[-1] = IGNORE_INDEX
    return targets


def _float64_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The plain definition in float64: log_softmax, pick the target, 0 where ignored."""
    out = torch.zeros(targets.shape, dtype=torch.float64)
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    for index in zip(*torch.nonzero(targets != IGNORE_INDEX, as_tuple=True), strict=True):
        out[index] = log_probs[index][targets[index]]
    return out


def test_token_logprobs_against_float64() -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(3, 7, 50, generator=g) * 4).requires_grad_()
    targets = _targets((3, 7), 50, seed=4)
    upstream = torch.randn(3, 7, generator=g)
    reference = logits.detach().double().requires_grad_()
    expected = _float64_logprobs(reference, targets)
    (expected * upstream.double()).sum().backward()
    got = token_logprobs(logits, targets)
    (got * upstream).sum().backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected.detach(), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(logits.grad.double(), reference.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        sequence_logprobs(logits, targets).double(), expected.detach().sum(-1), atol=1e-4, rtol=1e-6
    )
    assert sequence_logprobs(logits, targets)[-1].item() == 0.0


@pytest.mark.parametrize("chunk_rows", [1, 4, None])
def test_chunked_logprobs_against_float64(chunk_rows: int | None) -> None:
    """From hidden states and the output weight, in chunks: the full-logits values and gradients."""
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(3, 9, 16, generator=g).requires_grad_()
    weight = (torch.randn(50, 16, generator=g) * 0.5).requires_grad_()
    targets = _targets((3, 9), 50, seed=6)
    upstream = torch.randn(3, 9, generator=g)
    h64, w64 = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    expected = _float64_logprobs(h64 @ w64.T, targets)
    (expected * upstream.double()).sum().backward()
    got = chunked_token_logprobs(hidden, weight, targets, chunk_rows=chunk_rows)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got.double(), expected.detach(), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(hidden.grad.double(), h64.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weight.grad.double(), w64.grad, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        sums = chunked_sequence_logprobs(hidden, weight, targets, chunk_rows=chunk_rows)
    torch.testing.assert_close(sums.double(), expected.detach().sum(-1), atol=1e-4, rtol=1e-6)


def test_chunked_logprobs_keep_no_logits_for_backward() -> None:
    """No tensor of a chunk's logits (rows × vocab) is saved for the backward pass: only inputs are."""
    vocab = 97
    hidden = torch.randn(2, 30, 8, requires_grad=True)
    weight = torch.randn(vocab, 8, requires_grad=True)
    targets = torch.randint(0, vocab, (2, 30))
    saved: list[tuple[int, ...]] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        chunked_sequence_logprobs(hidden, weight, targets, chunk_rows=7).sum().backward()
    assert saved and not [s for s in saved if len(s) >= 2 and s[-1] == vocab]
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):  # the hook does see full logits
        sequence_logprobs(hidden @ weight.T, targets).sum().backward()
    assert [s for s in saved if s[-1] == vocab]


def test_chunked_logprobs_without_any_target() -> None:
    hidden = torch.randn(2, 4, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    out = chunked_sequence_logprobs(hidden, weight, torch.full((2, 4), IGNORE_INDEX))
    out.sum().backward()
    assert out.tolist() == [0.0, 0.0]
    assert not hidden.grad.any() and not weight.grad.any()


# --- DPO against TRL -----------------------------------------------------------------------------


def _pairs(vocab: int, n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """``n`` random pairs: a shared prompt (mask 0) then two different answers (mask 1)."""
    g = torch.Generator().manual_seed(seed)
    ids, masks = [], []
    for _ in range(n):
        prompt = torch.randint(0, vocab, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g).tolist()
        for _ in range(2):
            answer = torch.randint(
                0, vocab, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g
            ).tolist()
            ids.append(prompt + answer)
            masks.append([0] * len(prompt) + [1] * len(answer))
    return ids, masks


def _right_padded(rows: list[list[int]], length: int, value: int) -> torch.Tensor:
    return torch.tensor([row + [value] * (length - len(row)) for row in rows])


def test_dpo_with_nll_matches_trl(tmp_path: Path) -> None:
    """Llama 3's DPO (β 0.1, NLL weight 0.2) against TRL's ``loss_type=["sigmoid", "sft"]``.

    The same tiny model in herd and in transformers (with TRL's fused log-prob
    head): per-token log-probabilities, the loss, the gradient of the output
    weight and the logged rewards agree.
    """
    args = _trl_config(
        "DPOConfig",
        tmp_path,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, DPO_NLL_WEIGHT],
        beta=DPO_BETA,
        precompute_ref_log_probs=True,
    )
    from transformers import LlamaForCausalLM
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from herd.checkpoint.base import CheckpointInfo
    from herd.checkpoint.hf import write_hf
    from herd.checkpoint.load import model_tensors

    config = get_preset("llama3-tiny").replace(n_layers=2, vocab_size=512)
    model = build_model(config, seed=8)
    write_hf(tmp_path / "hf", CheckpointInfo(config), model_tensors(model))
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32)
    add_fused_lm_head(hf, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))

    n = 4
    ids, masks = _pairs(config.vocab_size, n, seed=9)
    order = [2 * i for i in range(n)] + [
        2 * i + 1 for i in range(n)
    ]  # TRL's batch: all chosen, then all rejected
    ids, masks = [ids[i] for i in order], [masks[i] for i in order]
    length = max(map(len, ids))
    inputs = {
        "input_ids": _right_padded(ids, length, 0),
        "attention_mask": _right_padded([[1] * len(row) for row in ids], length, 0),
        "completion_mask": _right_padded(masks, length, 0),
    }
    g = torch.Generator().manual_seed(10)
    inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = (
        -30 + 5 * torch.randn(2, n, generator=g)
    ).unbind()
    trainer = _trainer_state(
        args=args,
        beta=args.beta,
        loss_types=args.loss_type,
        loss_weights=args.loss_weights,
        precompute_ref_logps=True,
        ld_alpha=args.ld_alpha,
        f_divergence_type=args.f_divergence_type,
        label_smoothing=args.label_smoothing,
        use_weighting=args.use_weighting,
        aux_loss_enabled=False,
    )
    trl_loss = DPOTrainer._compute_loss(trainer, hf, dict(inputs), return_outputs=False)
    trl_loss.backward()
    with torch.no_grad():
        trl_token_logprobs = hf(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            labels=inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, IGNORE_INDEX),
            fused_lm_head=True,
        ).log_probs

    targets = _right_padded(
        [next_token_targets(i, m) for i, m in zip(ids, masks, strict=True)], length, IGNORE_INDEX
    )
    hidden = model.hidden_states(inputs["input_ids"])
    tokens = chunked_token_logprobs(hidden, model.output.weight, targets, chunk_rows=5)
    torch.testing.assert_close(tokens[:, :-1], trl_token_logprobs, atol=1e-5, rtol=1e-5)
    logps = tokens.sum(-1)
    out = dpo_loss(
        logps[:n],
        logps[n:],
        inputs["ref_chosen_logps"],
        inputs["ref_rejected_logps"],
        DPO_BETA,
        nll_weight=DPO_NLL_WEIGHT,
        chosen_tokens=(targets[:n] != IGNORE_INDEX).sum(-1),
    )
    out.loss.backward()
    torch.testing.assert_close(out.loss, trl_loss.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.output.weight.grad, hf.lm_head.weight.grad, atol=1e-6, rtol=1e-4)
    trl_metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()}
    ours = out.metrics()
    for our_key, trl_key in [
        ("rewards/chosen", "rewards/chosen"),
        ("rewards/rejected", "rewards/rejected"),
        ("rewards/margin", "rewards/margins"),
        ("rewards/accuracy", "rewards/accuracies"),
    ]:
        assert ours[our_key] == pytest.approx(trl_metrics[trl_key], abs=1e-5), our_key


# --- PPO -----------------------------------------------------------------------------------------


def test_ppo_settings_are_llama2s_and_torchtunes() -> None:
    assert (PPO_CLIP, PPO_KL_BETA, PPO_KL_BETA_LARGE, SAFETY_THRESHOLD) == (0.2, 0.01, 0.005, 0.15)
    assert PPO_VALUE_WEIGHT == 0.1


def test_unfinished_responses_score_the_penalty() -> None:
    score = torch.tensor([0.5, 2.0, -1.0])
    out = penalize_unfinished(score, torch.tensor([True, False, True]))
    assert out.tolist() == [0.5, -3.0, -1.0]


def test_ppo_policy_loss_worked_by_hand() -> None:
    # ratios 1.5 and 0.5 (the third token is padding), advantage 1 on both, ε = 0.2:
    # token 0: max(−1.5, −1.2) = −1.2, clipped (no gradient); token 1: max(−0.5, −0.8) = −0.5
    # loss = (−1.2 − 0.5) / 2 = −0.85, clip fraction 1/2, approx KL = ½ mean(log²1.5, log²0.5)
    # d loss / d logprob_1 = −A ρ / 2 = −0.25
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5), 3.0]], dtype=torch.float64, requires_grad=True)
    out = ppo_policy_loss(
        logprobs, torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 5.0]]), torch.tensor([[1, 1, 0]])
    )
    out.loss.backward()
    assert out.loss.item() == pytest.approx(-0.85)
    assert out.clip_fraction.item() == 0.5
    assert out.approx_kl.item() == pytest.approx(0.25 * (math.log(1.5) ** 2 + math.log(0.5) ** 2))
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.25, 0.0]], dtype=torch.float64))


def _random_ppo_batch(seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    new = torch.randn(3, 6, generator=generator, dtype=torch.float64) * 0.3
    old = torch.randn(3, 6, generator=generator, dtype=torch.float64) * 0.3
    target = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    return new, old, target, mask


def test_ppo_policy_loss_against_float64_loop_and_gradcheck() -> None:
    new, old, advantages, mask = _random_ppo_batch(0)
    terms, clipped, kl = [], [], []
    for b, t in mask.nonzero().tolist():
        ratio = math.exp(new[b, t] - old[b, t])
        a = advantages[b, t].item()
        unclipped, clipped_term = -a * ratio, -a * min(max(ratio, 0.8), 1.2)
        terms.append(max(unclipped, clipped_term))
        clipped.append(clipped_term > unclipped)
        kl.append(0.5 * (new[b, t] - old[b, t]).item() ** 2)
    out = ppo_policy_loss(new, old, advantages, mask)
    assert out.loss.item() == pytest.approx(sum(terms) / len(terms))
    assert out.clip_fraction.item() == pytest.approx(sum(clipped) / len(clipped))
    assert 0 < out.clip_fraction.item() < 1
    assert out.approx_kl.item() == pytest.approx(sum(kl) / len(kl))
    new.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ppo_policy_loss(x, old, advantages, mask).loss, (new,))


def test_ppo_value_loss_worked_by_hand() -> None:
    # ε = 0.2; token 0: V 1.0, V_old 0.5, R 2 → (1 − 2)² = 1 against clipped (0.7 − 2)² = 1.69: clipped
    # token 1: V 0.0, V_old 0.1, R 0 → both 0; loss = ½ (1.69 + 0) / 2 = 0.4225, clip fraction ½
    values = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    out = ppo_value_loss(values, torch.tensor([[0.5, 0.1]]), torch.tensor([[2.0, 0.0]]), torch.ones(1, 2))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(0.4225)
    assert out.clip_fraction.item() == 0.5
    assert not values.grad.any()  # the clipped value does not move with V


def test_ppo_value_loss_against_float64_loop_and_gradcheck() -> None:
    values, old, returns, mask = _random_ppo_batch(1)
    terms = []
    for b, t in mask.nonzero().tolist():
        v, o, r = values[b, t].item(), old[b, t].item(), returns[b, t].item()
        terms.append(0.5 * max((v - r) ** 2, (o + min(max(v - o, -0.2), 0.2) - r) ** 2))
    assert ppo_value_loss(values, old, returns, mask).loss.item() == pytest.approx(sum(terms) / len(terms))
    values.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ppo_value_loss(v, old, returns, mask).loss, (values,))


def test_ppo_losses_check_the_clip_range() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ConfigError, match="clip range must be positive, got 0"):
        ppo_policy_loss(x, x, x, x, clip=0)
    with pytest.raises(ConfigError, match=r"clip range must be positive, got -0\.1"):
        ppo_value_loss(x, x, x, x, clip=-0.1)


def test_kl_penalty_rewards_worked_by_hand() -> None:
    # β = 0.1; log π − log π0 = 0.5, 0, −1 on the three response tokens, then padding:
    # rewards −0.05, 0, 0.1 + score 2 = 2.1, 0; the second row's response is its middle two tokens
    logprobs = torch.tensor([[-1.0, -2.0, -3.0, 7.0], [-1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -2.0, -2.0, 0.0], [0.0, -1.2, -1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 0]])
    rewards = kl_penalty_rewards(torch.tensor([2.0, -1.0]), logprobs, ref, mask, beta=0.1)
    expected = [[-0.05, 0.0, 2.1, 0.0], [0.0, -0.02, -1.0, 0.0]]
    torch.testing.assert_close(rewards, torch.tensor(expected, dtype=torch.float64))


def test_kl_is_exactly_zero_when_policy_is_reference() -> None:
    logprobs = torch.randn(2, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    rewards = kl_penalty_rewards(torch.zeros(2), logprobs, logprobs.clone(), mask)
    assert torch.equal(rewards, torch.zeros(2, 5))
    out = ppo_policy_loss(logprobs, logprobs.clone(), torch.ones(2, 5), mask)
    assert out.approx_kl.item() == 0 and out.clip_fraction.item() == 0 and out.loss.item() == -1


def test_kl_penalty_rewards_checks() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        kl_penalty_rewards(torch.zeros(2), x, x, torch.ones(2, 3), beta=-1)
    with pytest.raises(InputError, match="response 1 has no token"):
        kl_penalty_rewards(torch.zeros(2), x, x, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_llama2_reward_worked_by_hand() -> None:
    # helpful 0.9, 0.8, 0.6; safety 0.5, 0.1, 0.7; only the third prompt is safety-tagged:
    # R_c = 0.9 (helpful), 0.1 (safety below 0.15), 0.7 (tagged); then whiten(logit(R_c))
    helpful = torch.tensor([0.9, 0.8, 0.6], dtype=torch.float64)
    safety = torch.tensor([0.5, 0.1, 0.7], dtype=torch.float64)
    out = llama2_reward(helpful, safety, torch.tensor([False, False, True]))
    logits = [math.log(p / (1 - p)) for p in (0.9, 0.1, 0.7)]
    mean = sum(logits) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in logits) / 2 + 1e-8)
    assert out.tolist() == pytest.approx([(x - mean) / std for x in logits])


def test_llama2_reward_stays_finite_at_certain_scores() -> None:
    out = llama2_reward(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([1.0, 1.0, 1.0]), torch.zeros(3))
    assert torch.isfinite(out).all()
