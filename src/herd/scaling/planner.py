"""Cluster planning: batch, memory per GPU, FLOPs and time per step of a 4D-parallel pretraining run.

The arithmetic behind Llama 3's Table 4 (§3.3.2: TP·CP·PP·DP on H100 80GB, 16M tokens a step,
38-43% MFU), for any herd model: what each data-parallel replica processes, whether the busiest
GPU's memory fits, and how long a step takes at a given MFU.

Memory accounting, per GPU, for the pipeline stage that needs the most (Llama 3 §3.3.2):

- parameters: bf16, 2 bytes each, split by TP and PP but **not** by DP: Llama 3's FSDP does not
  reshard the parameters after the forward pass (no second all-gather in the backward), so the
  whole stage's TP shard stays gathered for the step;
- gradients: fp32 (Llama 3 accumulates and reduce-scatters gradients in fp32), 4 bytes, each rank
  keeping its DP shard;
- optimizer: an fp32 master copy and AdamW's m and v (mixed precision as FSDP keeps it: the paper
  names bf16 compute and fp32 gradients, the master copy is herd's assumption), 12 bytes, DP-sharded.

Activations, bytes a token keeps per layer. Korthikanti et al. 2022 count ``s·b·h·(34 + 5·a·s/h)``
for GPT (GeLU MLP of 4h, dropout, LayerNorm, unfused attention). Counted anew for herd's block
(:mod:`herd.model.transformer`: pre-norm RMSNorm, GQA, SwiGLU, no dropout), with ``h`` the model
width, ``h_q = heads·head_dim``, ``h_kv = kv_heads·head_dim``, ``f`` the SwiGLU width, ``a`` heads,
bf16 tensors:

- ``none`` (keep everything backward reads): norm inputs and outputs ``2·(2h + 2h)``, q ``2h_q``,
  k and v ``4h_kv``, the attention output ``2h_q``, the fused attention's fp32 log-sum-exp ``4a``
  (it replaces Korthikanti's ``5as`` of probabilities: herd's ``scaled_dot_product_attention``
  never materialises them), SwiGLU's gate, up, SiLU and product ``4·2f``:
  ``8h + 4h_q + 4h_kv + 8f + 4a``;
- ``selective`` (Llama 1 §2.4: keep the outputs of the linear layers, recompute the rest): the
  layer input ``2h``, q, k, v ``2h_q + 4h_kv``, the attention projection's output ``2h`` and
  SwiGLU's gate and up ``4f``: ``4h + 2h_q + 4h_kv + 4f``, plus one layer's ``none`` set while it is
  recomputed;
- ``full``: only each layer's input ``2h``, plus one layer's ``none`` set while it is recomputed.

TP divides every term (sequence parallelism shards the ``h``-sized tensors, the heads and SwiGLU
columns shard the others; a kv head is replicated where TP exceeds the kv heads), CP divides the
tokens (each rank keeps ``seq/cp`` of them). Under the 1F1B schedule stage ``i`` of ``pp`` holds
``min(pp - i, microbatches)`` microbatches in flight. The fused loss (:mod:`herd.model.cross_entropy`)
never holds the whole logits, so they are not counted. Layers are split over stages as Llama 3
balanced them: the embedding and the output each take a layer's slot on the first and last stage.

FLOPs per step are herd's per-token training FLOPs (:func:`herd.model.info.model_info`, PaLM
accounting at the planned sequence length) times the tokens per step; at a given MFU a GPU does
``MFU · peak`` FLOP/s, which gives the step time and the tokens per day.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass

from herd.errors import ConfigError
from herd.model.build import empty_model
from herd.model.config import ModelConfig
from herd.model.info import model_info

RECOMPUTE_MODES = ("none", "selective", "full")
PARAM_BYTES = 2  # bf16
GRAD_BYTES = 4  # fp32
OPTIMIZER_BYTES = 12  # fp32 master copy, AdamW m and v
H100_BF16_DENSE_TFLOPS = 989.0
SECONDS_PER_DAY = 86_400

_LAYER = re.compile(r"layers\.(\d+)\.")


@dataclass(frozen=True)
class ClusterPlan:
    """A pretraining run to plan: the model, its parallelism and its batch."""

    model: ModelConfig
    gpus: int
    batch_tokens: int
    seq: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    micro_batch: int = 1
    mfu: float = 0.40
    peak_tflops: float = H100_BF16_DENSE_TFLOPS
    gpu_memory_gb: float = 80.0
    recompute: str = "selective"

    def __post_init__(self) -> None:
        for key in ("gpus", "batch_tokens", "seq", "tp", "pp", "cp", "micro_batch"):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"plan: {key} must be a positive integer, got {value!r}")
        if not 0 < self.mfu <= 1:
            raise ConfigError(f"plan: mfu must be in (0, 1], got {self.mfu}")
        for key in ("peak_tflops", "gpu_memory_gb"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"plan: {key} must be positive, got {getattr(self, key)}")
        if self.recompute not in RECOMPUTE_MODES:
            raise ConfigError(
                f"plan: recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {self.recompute!r}"
            )


@dataclass(frozen=True)
class Memory:
    """Bytes on one GPU."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


@dataclass(frozen=True)
class PlanReport:
    """What :func:`plan` computes; memory is the busiest pipeline stage's, per GPU."""

    model: str
    gpus: int
    tp: int
    pp: int
    cp: int
    dp: int
    seq: int
    tokens_per_step: int
    sequences_per_step: int
    sequences_per_replica: int
    micro_batch: int
    microbatches: int
    layers_per_stage: tuple[int, ...]
    peak_stage: int
    parameters: int
    parameters_per_gpu: int
    recompute: str
    activation_bytes_per_token_layer: int
    memory: Memory
    gpu_memory_gb: float
    fits: bool
    flops_per_token: int
    flops_per_step: int
    mfu: float
    peak_tflops: float
    achieved_tflops_per_gpu: float
    step_seconds: float
    tokens_per_day: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["memory"]["total"] = self.memory.total
        out["layers_per_stage"] = list(self.layers_per_stage)
        return out


def stage_layers(n_layers: int, pp: int) -> tuple[int, ...]:
    """Transformer layers on each of ``pp`` stages, balanced as Llama 3 §3.3.2 did: the embedding and
    the output projection each count as one layer's slot (on the first and the last stage), and the
    ``n_layers + 2`` slots are spread evenly, the first stages taking any remainder."""
    if pp > n_layers + 2:
        raise ConfigError(f"plan: pp ({pp}) exceeds the model's {n_layers} layers + embedding + output")
    base, extra = divmod(n_layers + 2, pp)
    slots = [base + (i < extra) for i in range(pp)]
    slots[0] -= 1
    slots[-1] -= 1
    return tuple(slots)


def _check_tp(config: ModelConfig, tp: int) -> None:
    if tp > config.n_heads or config.n_heads % tp:
        raise ConfigError(f"plan: tp ({tp}) must divide the {config.n_heads} attention heads")
    if config.n_kv_heads % tp and tp % config.n_kv_heads:
        raise ConfigError(
            f"plan: tp ({tp}) must divide the {config.n_kv_heads} kv heads or be a multiple of them"
        )
    if config.hidden_dim % tp:
        raise ConfigError(f"plan: tp ({tp}) must divide the feed-forward width {config.hidden_dim}")


def _kv_heads_per_rank(config: ModelConfig, tp: int) -> int:
    """kv heads a TP rank holds: its share, or one replicated head when TP exceeds the kv heads."""
    return max(config.n_kv_heads // tp, 1)


@functools.lru_cache(maxsize=8)
def _rank_parameters(config: ModelConfig, tp: int) -> tuple[tuple[int, ...], int, int]:
    """Parameters one TP rank holds in each layer, in the embedding and in the output (final norm and
    projection), counted on herd's model built on the meta device: matrices split by TP (k and v by
    kv heads), norm weights replicated."""
    per_layer = [0] * config.n_layers
    embedding = head = 0
    kv_share = _kv_heads_per_rank(config, tp) / config.n_kv_heads
    for name, param in empty_model(config, "meta").named_parameters():
        if param.dim() == 1:
            count = param.numel()
        elif name.endswith(("wk.weight", "wv.weight")):
            count = round(param.numel() * kv_share)
        else:
            count = math.ceil(param.numel() / tp)
        layer = _LAYER.match(name)
        if layer:
            per_layer[int(layer.group(1))] += count
        elif name.startswith("tok_embeddings."):
            embedding += count
        else:
            head += count
    return tuple(per_layer), embedding, head


def _stage_parameters(config: ModelConfig, tp: int, layers: tuple[int, ...]) -> list[int]:
    """Parameters one GPU of each stage holds; with tied embeddings and several stages the last
    stage holds a copy of the embedding as its output projection."""
    per_layer, embedding, head = _rank_parameters(config, tp)
    if config.tie_embeddings and len(layers) > 1:
        head += embedding
    stages, start = [], 0
    for i, n in enumerate(layers):
        stages.append(
            sum(per_layer[start : start + n])
            + (embedding if i == 0 else 0)
            + (head if i == len(layers) - 1 else 0)
        )
        start += n
    return stages


def activation_bytes_per_token(config: ModelConfig, tp: int, recompute: str) -> tuple[int, int]:
    """Bytes a token keeps per layer on one TP rank under ``recompute``, and the bytes per token of
    the one layer being recomputed in the backward (0 for ``none``); the formulas are the module's."""
    h = math.ceil(config.dim / tp)
    h_q = config.n_heads * config.head_dim // tp
    h_kv = _kv_heads_per_rank(config, tp) * config.head_dim
    f = config.hidden_dim // tp
    heads = config.n_heads // tp
    everything = 8 * h + 4 * h_q + 4 * h_kv + 8 * f + 4 * heads
    if recompute == "none":
        return everything, 0
    if recompute == "selective":
        return 4 * h + 2 * h_q + 4 * h_kv + 4 * f, everything
    return 2 * h, everything


def _divide(total: int, by: int, what: str, into: str) -> int:
    if total % by:
        raise ConfigError(f"plan: {what} ({total:,}) is not divisible by {into} ({by:,})")
    return total // by


def plan(spec: ClusterPlan) -> PlanReport:
    """Batch, memory per GPU, fit, FLOPs and time per step of ``spec`` (module docstring: the accounting).

    Raises :class:`~herd.errors.ConfigError` naming the first split that does not divide.
    """
    config = spec.model
    dp = _divide(spec.gpus, spec.tp * spec.pp * spec.cp, "gpus", "tp·pp·cp")
    _check_tp(config, spec.tp)
    _divide(spec.seq, spec.cp, "seq", "cp")
    sequences = _divide(spec.batch_tokens, spec.seq, "batch tokens", "seq")
    per_replica = _divide(sequences, dp, "sequences per step", "dp")
    microbatches = _divide(per_replica, spec.micro_batch, "sequences per replica", "micro batch")
    layers = stage_layers(config.n_layers, spec.pp)
    params = _stage_parameters(config, spec.tp, layers)
    kept, recomputed = activation_bytes_per_token(config, spec.tp, spec.recompute)
    tokens = spec.micro_batch * spec.seq // spec.cp
    memories = []
    for i, (n, p) in enumerate(zip(layers, params, strict=True)):
        in_flight = min(spec.pp - i, microbatches)
        memories.append(
            Memory(
                parameters=PARAM_BYTES * p,
                gradients=math.ceil(GRAD_BYTES * p / dp),
                optimizer=math.ceil(OPTIMIZER_BYTES * p / dp),
                activations=tokens * (in_flight * n * kept + (recomputed if n else 0)),
            )
        )
    peak = max(range(spec.pp), key=lambda i: memories[i].total)
    info = model_info(config, spec.seq)
    flops_per_step = info.training_flops_per_token * spec.batch_tokens
    achieved = spec.mfu * spec.peak_tflops
    step_seconds = flops_per_step / (spec.gpus * achieved * 1e12)
    return PlanReport(
        model=config.name,
        gpus=spec.gpus,
        tp=spec.tp,
        pp=spec.pp,
        cp=spec.cp,
        dp=dp,
        seq=spec.seq,
        tokens_per_step=spec.batch_tokens,
        sequences_per_step=sequences,
        sequences_per_replica=per_replica,
        micro_batch=spec.micro_batch,
        microbatches=microbatches,
        layers_per_stage=layers,
        peak_stage=peak,
        parameters=info.parameters,
        parameters_per_gpu=params[peak],
        recompute=spec.recompute,
        activation_bytes_per_token_layer=kept,
        memory=memories[peak],
        gpu_memory_gb=spec.gpu_memory_gb,
        fits=memories[peak].total <= spec.gpu_memory_gb * 1e9,
        flops_per_token=info.training_flops_per_token,
        flops_per_step=flops_per_step,
        mfu=spec.mfu,
        peak_tflops=spec.peak_tflops,
        achieved_tflops_per_gpu=achieved,
        step_seconds=step_seconds,
        tokens_per_day=spec.batch_tokens * SECONDS_PER_DAY / step_seconds,
    )


@dataclass(frozen=True)
class Table4Row:
    """One row of Llama 3's Table 4 (405B on H100 80GB): the split and what the paper measured."""

    gpus: int
    tp: int
    cp: int
    pp: int
    dp: int
    seq: int
    batch_per_dp: int
    tflops_per_gpu: float
    mfu: float

    @property
    def batch_tokens(self) -> int:
        """The paper's "16M" tokens a step: dp · batch per dp · seq (2^24 in all three rows)."""
        return self.dp * self.batch_per_dp * self.seq


LLAMA3_TABLE4 = (
    Table4Row(gpus=8192, tp=8, cp=1, pp=16, dp=64, seq=8192, batch_per_dp=32, tflops_per_gpu=430, mfu=0.43),
    Table4Row(gpus=16384, tp=8, cp=1, pp=16, dp=128, seq=8192, batch_per_dp=16, tflops_per_gpu=400, mfu=0.41),
    Table4Row(
        gpus=16384, tp=8, cp=16, pp=16, dp=8, seq=131072, batch_per_dp=16, tflops_per_gpu=380, mfu=0.38
    ),
)
LLAMA3_TABLE4_MODEL = "llama3.1-405b"


def table4_plan(model: ModelConfig, row: Table4Row, recompute: str = "selective") -> ClusterPlan:
    """The plan of a Table 4 row: its split and batch, at the paper's MFU on H100s (989 TFLOPS bf16).

    ``selective`` by default, Llama's own recomputation (Llama 1 §2.4); keeping every activation
    (``none``) does not fit the 1F1B stages holding 15 or 16 microbatches in this accounting.
    """
    return ClusterPlan(
        model=model,
        gpus=row.gpus,
        batch_tokens=row.batch_tokens,
        seq=row.seq,
        tp=row.tp,
        pp=row.pp,
        cp=row.cp,
        mfu=row.mfu,
        recompute=recompute,
    )
