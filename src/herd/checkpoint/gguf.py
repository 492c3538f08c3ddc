"""llama.cpp's GGUF format: read any Llama-architecture GGUF file, write one llama.cpp loads.

The container (header, typed metadata, tensor directory, data offsets) is
:mod:`herd.io.gguf`; this module holds what makes a GGUF file a Llama model:
the ``llama.*`` keys, tensor names, the q/k permutation and the stored dtypes.

Names: ``token_embd``, ``blk.N.attn_q|attn_k|attn_v|attn_output``,
``blk.N.ffn_gate|ffn_down|ffn_up``, ``blk.N.attn_norm|ffn_norm``,
``output_norm``, ``output`` (absent when the embeddings are tied). q/k rows are
stored in Meta's interleaved RoPE order, since llama.cpp rotates adjacent pairs
(docs/spec.md §1); they are permuted to herd's rotate-half order on reading and back on
writing (:mod:`herd.checkpoint.permute`).

Reading dequantizes lazily, one tensor per :meth:`GGUFReader.get`, through
``gguf.quants.dequantize`` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_*, the K- and
IQ-quants). A file whose 2-D weights are all F16 (or all BF16) reads in that
dtype, norms included; any other mix reads in fp32. Llama-3.1-style files carry
``rope_freqs.weight``, llama.cpp's per-frequency divisors; herd derives its
``llama3`` RoPE scaling from them and checks that it reproduces every factor.

Writing streams tensors in the order of :func:`herd.checkpoint.base.tensor_names`:
the tensor directory is computed from the config, so each tensor is encoded
and written as it arrives and never held with the others. Norms are F32, 2-D
weights F32, F16, BF16 or Q8_0 (rows that are not a multiple of Q8_0's
32-value block fall back to F16, as llama.cpp's converter does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValue, LlamaFileType, RopeScalingType

from herd.checkpoint.base import (
    CheckpointInfo,
    CheckpointReader,
    MissingTensorError,
    check_shape,
    expected_shape,
    storage_name,
    tensor_names,
)
from herd.checkpoint.destination import staged_checkpoint
from herd.checkpoint.names import NameMap
from herd.checkpoint.permute import halves_to_interleaved, interleaved_to_halves
from herd.errors import CheckpointError, ConfigError
from herd.io.fields import Fields
from herd.io.gguf import GGUFFile, TensorEntry, TensorSlot, write_gguf_file
from herd.model.config import ModelConfig, RopeScaling
from herd.model.rope import rope_frequencies

ARCH = "llama"
ROPE_FREQS = "rope_freqs.weight"
TOKENIZER_EXTRA = "gguf_tokenizer"

NAMES = NameMap(
    top={
        "token_embd.weight": "tok_embeddings.weight",
        "output_norm.weight": "norm.weight",
        "output.weight": "output.weight",
    },
    layer_prefix="blk.{}.",
    layer={
        "attn_q": "attention.wq",
        "attn_k": "attention.wk",
        "attn_v": "attention.wv",
        "attn_output": "attention.wo",
        "ffn_gate": "feed_forward.w1",
        "ffn_down": "feed_forward.w2",
        "ffn_up": "feed_forward.w3",
        "attn_norm": "attention_norm",
        "ffn_norm": "ffn_norm",
    },
)

WRITE_TYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0,
}
_FILE_TYPES = {
    GGMLQuantizationType.F32: LlamaFileType.ALL_F32,
    GGMLQuantizationType.F16: LlamaFileType.MOSTLY_F16,
    GGMLQuantizationType.BF16: LlamaFileType.MOSTLY_BF16,
    GGMLQuantizationType.Q8_0: LlamaFileType.MOSTLY_Q8_0,
}
_FLOAT_TYPES = {GGMLQuantizationType.F16: torch.float16, GGMLQuantizationType.BF16: torch.bfloat16}


def _qk_heads(config: ModelConfig, name: str) -> int | None:
    """Heads to permute over for wq/wk (None for every other tensor)."""
    if name.endswith("attention.wq.weight"):
        return config.n_heads
    if name.endswith("attention.wk.weight"):
        return config.n_kv_heads
    return None


# ---- RoPE scaling --------------------------------------------------------------------------------


def rope_factors(config: ModelConfig) -> torch.Tensor:
    """llama.cpp's ``rope_freqs.weight``: per frequency, unscaled / scaled (the divisor it applies)."""
    base = rope_frequencies(config.head_dim, config.rope_theta)
    return base / rope_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)


def _scaling_from_factors(
    factors: torch.Tensor, config: ModelConfig, original: int, source: Path
) -> RopeScaling | None:
    """The ``llama3`` scaling whose divisors are ``factors``.

    The divisors fix the scale factor (their maximum) but not the band edges
    uniquely, so herd takes Llama 3.1's low/high frequency factors 1 and 4 and
    the file's original context (default 8192; docs/spec.md §1) and verifies that they
    reproduce every divisor, rather than guess.
    """
    factors = factors.float().flatten()
    if factors.numel() != config.head_dim // 2:
        raise CheckpointError(
            f"{source}: {ROPE_FREQS} has {factors.numel()} values, expected head_dim/2 = {config.head_dim // 2}"
        )
    if torch.all(factors == 1):
        return None
    scaling = RopeScaling(kind="llama3", factor=float(factors.max()), original_max_seq_len=original)
    expected = rope_factors(config.replace(rope_scaling=scaling))
    if not torch.allclose(factors, expected, rtol=1e-4, atol=0):
        raise CheckpointError(
            f"{source}: {ROPE_FREQS} does not match Llama 3.1 RoPE scaling (factor {scaling.factor}, "
            f"low/high frequency factors 1/4, original context {original}); herd cannot represent it"
        )
    return scaling


def _linear_scaling(meta: Fields) -> RopeScaling | None:
    kind = meta.text(f"{ARCH}.rope.scaling.type", None)
    factor = meta.number(f"{ARCH}.rope.scaling.factor", 1.0, positive=False)
    if kind in (None, "none", "linear") and factor in (0.0, 1.0):
        return None
    if kind in (None, "linear"):  # llama.cpp treats a factor without a type as linear
        return RopeScaling(kind="linear", factor=factor)
    raise CheckpointError(
        f"{meta.source}: RoPE scaling type {kind!r} is not supported (herd knows linear, llama3)"
    )


# ---- reading -------------------------------------------------------------------------------------


def _f32(value: float) -> float:
    """The shortest decimal that a float32 metadata value stands for (``1e-05``, not ``9.99999974e-06``)."""
    return float(str(np.float32(value)))


def config_from_gguf(file: GGUFFile) -> ModelConfig:
    """A :class:`ModelConfig` from the ``llama.*`` metadata of a GGUF file (every value type-checked)."""
    source = file.path
    meta = Fields(file.metadata_values(), source, "metadata key", error=CheckpointError)
    if meta.integer(f"{ARCH}.expert_count", 0, minimum=0):
        raise CheckpointError(f"{source}: mixture-of-experts GGUF models are not supported")
    dim, n_heads = meta.integer(f"{ARCH}.embedding_length"), meta.integer(f"{ARCH}.attention.head_count")
    rope_dims = meta.integer(f"{ARCH}.rope.dimension_count", None)
    head_dim = meta.integer(f"{ARCH}.attention.key_length", None) or rope_dims or dim // n_heads
    if rope_dims not in (None, head_dim):
        raise CheckpointError(f"{source}: partial RoPE ({rope_dims} of {head_dim} dims) is not supported")
    tokens = meta.array("tokenizer.ggml.tokens", None)
    vocab = meta.integer(f"{ARCH}.vocab_size", None) or (len(tokens) if tokens else None)
    if vocab is None:
        embd = file.tensors.get("token_embd.weight")
        vocab = (
            embd.shape[0] if embd is not None and len(embd.shape) == 2 else meta.integer(f"{ARCH}.vocab_size")
        )
    try:
        config = ModelConfig(
            dim=dim,
            n_layers=meta.integer(f"{ARCH}.block_count"),
            n_heads=n_heads,
            n_kv_heads=meta.integer(f"{ARCH}.attention.head_count_kv", n_heads),
            vocab_size=vocab,
            hidden_dim=meta.integer(f"{ARCH}.feed_forward_length"),
            norm_eps=_f32(meta.number(f"{ARCH}.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=_f32(meta.number(f"{ARCH}.rope.freq_base", 10000.0)),
            rope_scaling=_linear_scaling(meta),
            max_seq_len=meta.integer(f"{ARCH}.context_length", 4096),
            tie_embeddings="output.weight" not in file.tensors,
            head_dim=head_dim,
            name=meta.text("general.name", ""),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if ROPE_FREQS in file.tensors:
        original = meta.integer(f"{ARCH}.rope.scaling.original_context_length", 8192)
        scaling = _scaling_from_factors(file.decode(file.tensors[ROPE_FREQS]), config, original, source)
        config = config.replace(rope_scaling=scaling)
    return config


class GGUFReader(CheckpointReader):
    """Reads a Llama-architecture GGUF file lazily (memory-mapped, dequantized per tensor).

    ``info.extras["gguf_tokenizer"]`` holds every ``tokenizer.*`` metadata field
    as a typed :class:`gguf.GGUFValue`, so a GGUF → GGUF conversion carries the
    vocabulary, merges and chat template across unchanged.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.file = GGUFFile(self.path)
        arch = self.file.get("general.architecture")
        if arch != ARCH:
            raise CheckpointError(
                f"{self.path}: general.architecture is {arch!r}; herd reads Llama-architecture GGUF files only"
            )
        tokenizer = {k: v for k, v in self.file.metadata.items() if k.startswith("tokenizer.")}
        self.info = CheckpointInfo(config_from_gguf(self.file), extras={TOKENIZER_EXTRA: tokenizer})
        self._entries = {}
        for name, entry in self.file.tensors.items():
            canonical = NAMES.to_herd(name)
            if canonical is not None:
                self._entries[canonical] = entry
        self.dtype = self._model_dtype()

    def _model_dtype(self) -> torch.dtype:
        """F16/BF16 when every 2-D weight is stored so; fp32 otherwise (quantized or mixed)."""
        types = {e.ggml_type for e in self._entries.values() if len(e.shape) == 2}
        if len(types) == 1:
            return _FLOAT_TYPES.get(types.pop(), torch.float32)
        return torch.float32

    def _entry(self, name: str) -> TensorEntry:
        """The directory entry of the canonical tensor ``name`` (the embedding for a tied output)."""
        if name == "output.weight" and self.config.tie_embeddings:
            name = "tok_embeddings.weight"
        entry = self._entries.get(name)
        if entry is None:
            raise MissingTensorError(f"{self.path}: tensor {NAMES.to_format(name)} is missing")
        return entry

    def storage(self, name: str) -> tuple[str, int]:
        entry = self._entry(name)
        return storage_name(entry.type_name), math.prod(entry.shape)

    def get(self, name: str) -> torch.Tensor:
        entry = self._entry(name)
        tensor = check_shape(self.config, name, self.file.decode(entry), self.path)
        heads = _qk_heads(self.config, name)
        if heads is not None:
            tensor = interleaved_to_halves(tensor, heads)
        return tensor.to(self.dtype)

    def close(self) -> None:
        self.file.close()


# ---- writing -------------------------------------------------------------------------------------


def _tensor_type(shape: tuple[int, ...], wanted: GGMLQuantizationType) -> GGMLQuantizationType:
    """The stored type of one tensor: norms F32; weights ``wanted`` unless its block does not fit a row."""
    if len(shape) < 2:
        return GGMLQuantizationType.F32
    if shape[-1] % GGML_QUANT_SIZES[wanted][0]:
        return GGMLQuantizationType.F16
    return wanted


def _encode(tensor: torch.Tensor, ggml_type: GGMLQuantizationType) -> np.ndarray:
    """A tensor's bytes in ``ggml_type`` (F16 natively, BF16 and Q8_0 through ``gguf.quants``)."""
    arr = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
    if ggml_type == GGMLQuantizationType.F16:
        return arr.astype(np.float16)
    return gguf.quants.quantize(arr, ggml_type)


def _add_metadata(writer: gguf.GGUFWriter, config: ModelConfig, wanted: GGMLQuantizationType) -> None:
    """The ``general.*`` and ``llama.*`` keys llama.cpp needs to build the model."""
    writer.add_name(config.name or "herd")
    writer.add_file_type(_FILE_TYPES[wanted])
    if wanted == GGMLQuantizationType.Q8_0:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_seq_len)
    writer.add_embedding_length(config.dim)
    writer.add_block_count(config.n_layers)
    writer.add_feed_forward_length(config.hidden_dim)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(config.vocab_size)
    scaling = config.rope_scaling
    if scaling is not None and scaling.kind == "linear":
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(scaling.factor)
    elif scaling is not None:
        writer.add_rope_scaling_orig_ctx_len(scaling.original_max_seq_len)


def _add_tokenizer(
    writer: gguf.GGUFWriter, info: CheckpointInfo, tokenizer: object | None, dst: Path
) -> None:
    """Vocabulary metadata: from a herd tokenizer if given (padded to the model's vocabulary rows), else
    the source GGUF's raw fields."""
    if tokenizer is not None:
        try:
            from herd.tokenizer import write_gguf_tokenizer
        except ImportError:
            raise CheckpointError(
                f"{dst}: cannot write the tokenizer (herd.tokenizer.write_gguf_tokenizer is unavailable)"
            ) from None
        write_gguf_tokenizer(writer, tokenizer, info.config.vocab_size)
        return
    fields: dict[str, GGUFValue] = info.extras.get(TOKENIZER_EXTRA) or {}
    for key, field in fields.items():
        writer.add_key_value(key, field.value, field.type, field.sub_type)


def write_gguf(
    dst: Path | str,
    info: CheckpointInfo,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    dtype: str = "f32",
    tokenizer: object | None = None,
) -> Path:
    """Write a Llama-architecture GGUF file atomically, streaming ``tensors`` (canonical herd names).

    ``dtype``: f32, f16, bf16 or q8_0 for the 2-D weights (norms stay F32).
    ``tokenizer``: a herd tokenizer, written with ``herd.tokenizer.write_gguf_tokenizer``
    (placeholders fill the rows past its last id, as llama.cpp needs); without one, the
    ``tokenizer.*`` fields of a GGUF source (``info.extras``) are copied.
    Tied embeddings are written once, as ``token_embd`` (llama.cpp reuses it as the output).
    """
    dst = Path(dst)
    wanted = WRITE_TYPES.get(dtype.lower())
    if wanted is None:
        raise CheckpointError(f"{dst}: GGUF dtype must be one of {', '.join(WRITE_TYPES)}, got {dtype!r}")
    config = info.config
    plan = {name: _tensor_type(expected_shape(config, name), wanted) for name in tensor_names(config)}
    directory = [
        TensorSlot(NAMES.to_format(name), expected_shape(config, name), t) for name, t in plan.items()
    ]
    data = _encoded(config, plan, tensors, dst)
    if config.rope_scaling is not None and config.rope_scaling.kind == "llama3":
        factors = rope_factors(config).numpy()
        directory.insert(0, TensorSlot(ROPE_FREQS, factors.shape, GGMLQuantizationType.F32))
        data = itertools.chain([factors], data)

    def add_metadata(writer: gguf.GGUFWriter) -> None:
        _add_metadata(writer, config, wanted)
        _add_tokenizer(writer, info, tokenizer, dst)

    with staged_checkpoint(dst, "gguf") as tmp:
        write_gguf_file(tmp, ARCH, add_metadata, directory, data)
    return dst


def _encoded(
    config: ModelConfig,
    plan: dict[str, GGMLQuantizationType],
    tensors: Iterable[tuple[str, torch.Tensor]],
    dst: Path,
) -> Iterator[np.ndarray]:
    """Each tensor's bytes in ``plan`` order as the source yields them; out-of-order ones wait their turn.

    q/k rows go back to Meta's interleaved RoPE order; every source tensor is
    checked (name and shape), including those after the last one written.
    """
    order = iter(plan)
    current = next(order, None)
    pending: dict[str, torch.Tensor] = {}
    for name, tensor in tensors:
        if name not in plan:
            if name == "output.weight" and config.tie_embeddings:
                continue
            raise CheckpointError(f"{dst}: tensor {name} is not part of a Llama model")
        pending[name] = check_shape(config, name, tensor, dst)
        while current is not None and current in pending:
            t = pending.pop(current)
            heads = _qk_heads(config, current)
            if heads is not None:
                t = halves_to_interleaved(t, heads)
            yield _encode(t, plan[current])
            current = next(order, None)
    if current is not None:
        raise CheckpointError(f"{dst}: the source has no tensor {current}")
