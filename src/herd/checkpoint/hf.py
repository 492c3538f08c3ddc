"""herd's native format: the Hugging Face Llama layout (``config.json`` + safetensors).

A directory written here loads in ``transformers.AutoModelForCausalLM``
unchanged, and any Hugging Face Llama checkpoint loads in herd. Above
``max_shard_bytes`` the weights are split into ``model-0000i-of-0000N.safetensors``
with a ``model.safetensors.index.json`` weight map, as ``save_pretrained`` does.
``config.json`` may describe RoPE with ``rope_theta``/``rope_scaling`` (transformers
v4, the released checkpoints) or ``rope_parameters`` (v5); both are read.
A reward model's head, ``score.weight``, has the same name in herd and on disk
(:mod:`herd.checkpoint.sequence_classification`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from herd.checkpoint.base import (
    CheckpointInfo,
    CheckpointReader,
    MissingTensorError,
    check_shape,
    copy_side_files,
    storage_name,
)
from herd.checkpoint.destination import staged_checkpoint
from herd.checkpoint.names import NameMap
from herd.errors import CheckpointError, ConfigError, HerdError
from herd.io.fields import Fields, read_json_object
from herd.model.config import ModelConfig, RopeScaling
from herd.paths import contained

DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

NAMES = NameMap(
    top={
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight",
        "score.weight": "score.weight",
    },
    layer_prefix="model.layers.{}.",
    layer={
        "self_attn.q_proj": "attention.wq",
        "self_attn.k_proj": "attention.wk",
        "self_attn.v_proj": "attention.wv",
        "self_attn.o_proj": "attention.wo",
        "mlp.gate_proj": "feed_forward.w1",
        "mlp.down_proj": "feed_forward.w2",
        "mlp.up_proj": "feed_forward.w3",
        "input_layernorm": "attention_norm",
        "post_attention_layernorm": "ffn_norm",
    },
)


# ---- config.json ---------------------------------------------------------------------------------


def config_from_hf(hf: dict[str, Any], source: Path | str = "config.json") -> ModelConfig:
    """A :class:`ModelConfig` from a Hugging Face Llama ``config.json`` dict (v4 or v5 RoPE keys).

    Every value is type-checked (:class:`~herd.io.fields.Fields`); errors name ``source`` and the key.
    """
    if not isinstance(hf, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {type(hf).__name__}")
    f = Fields(hf, source, error=CheckpointError)
    model_type = f.text("model_type", "llama")
    if model_type not in ("llama", "mistral"):
        raise CheckpointError(f"{source}: model_type {model_type!r} is not a Llama-architecture model")
    rope = f.section("rope_parameters")
    theta = rope.number("rope_theta", None) if rope is not None else None
    scaling = f.section("rope_scaling")
    if scaling is None and rope is not None and rope.text("rope_type", "default") != "default":
        scaling = rope
    dim = f.integer("hidden_size")
    n_heads = f.integer("num_attention_heads")
    try:
        return ModelConfig(
            dim=dim,
            n_layers=f.integer("num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=f.integer("num_key_value_heads", n_heads),
            vocab_size=f.integer("vocab_size"),
            hidden_dim=f.integer("intermediate_size"),
            norm_eps=f.number("rms_norm_eps", 1e-6),
            rope_theta=theta or f.number("rope_theta", 10000.0),
            rope_scaling=_scaling_from_hf(scaling),
            max_seq_len=f.integer("max_position_embeddings", 4096),
            tie_embeddings=f.flag("tie_word_embeddings", False),
            head_dim=f.integer("head_dim", dim // n_heads),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def _scaling_from_hf(f: Fields | None) -> RopeScaling | None:
    if f is None:
        return None
    kind = f.text("rope_type", None) or f.text("type", "default")
    if kind == "default":
        return None
    if kind == "linear":
        return RopeScaling(kind="linear", factor=f.number("factor"))
    if kind == "llama3":
        return RopeScaling(
            kind="llama3",
            factor=f.number("factor"),
            low_freq_factor=f.number("low_freq_factor"),
            high_freq_factor=f.number("high_freq_factor"),
            original_max_seq_len=f.integer("original_max_position_embeddings"),
        )
    raise f.error("rope_type", f"{kind!r} is not supported (herd knows llama3 and linear)")


def config_to_hf(config: ModelConfig, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """A transformers ``LlamaConfig`` dict (v4 RoPE keys, which v5 still reads)."""
    scaling: dict[str, Any] | None = None
    if config.rope_scaling is not None:
        s = config.rope_scaling
        scaling = {"rope_type": s.kind, "factor": s.factor}
        if s.kind == "llama3":
            scaling |= {
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_seq_len,
            }
    out: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.hidden_dim,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": scaling,
        "max_position_embeddings": config.max_seq_len,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
    }
    if dtype is not None:
        out["torch_dtype"] = str(dtype).removeprefix("torch.")
    return out


# ---- reading -------------------------------------------------------------------------------------


def shard_path(root: Path, name: object, index: Path) -> Path:
    """The shard file ``name`` that ``index`` lists, which must lie in the checkpoint directory ``root``
    (:func:`herd.paths.contained`: no absolute names, no ``../`` that climbs out)."""
    if not isinstance(name, str):
        raise CheckpointError(f"{index}: weight_map values must be shard file names, got {name!r}")
    try:
        return contained(root, name, index)
    except HerdError as exc:
        raise CheckpointError(str(exc)) from None


def is_hf_dir(path: Path) -> bool:
    """Whether ``path`` looks like a Hugging Face model directory."""
    return path.is_dir() and (path / "config.json").is_file()


class HFReader(CheckpointReader):
    """Reads a Hugging Face Llama directory lazily (safetensors are memory-mapped)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        config_path = self.path / "config.json"
        self.info = CheckpointInfo(
            config_from_hf(read_json_object(config_path, CheckpointError), config_path)
        )
        self._files: dict[Path, Any] = {}
        self._where = self._weight_map()

    def _weight_map(self) -> dict[str, tuple[Path, str]]:
        """canonical name → (file, name in file)."""
        index = self.path / INDEX_NAME
        if index.is_file():
            weight_map = read_json_object(index, CheckpointError).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(
                    f"{index}: weight_map must be an object of tensor name to shard file, got "
                    f"{type(weight_map).__name__}"
                )
            files = {name: shard_path(self.path, f, index) for name, f in weight_map.items()}
        else:
            single = self.path / SINGLE_NAME
            if not single.is_file():
                if any(self.path.glob("*.bin")):
                    raise CheckpointError(
                        f"{self.path}: only pickle (.bin) weights found; herd reads safetensors only "
                        "(convert them with transformers' save_pretrained(safe_serialization=True))"
                    )
                raise CheckpointError(f"{self.path}: no {SINGLE_NAME} or {INDEX_NAME}")
            files = {name: single for name in self._open(single).keys()}  # noqa: SIM118 (safe_open is not iterable)
        out = {}
        for name, file in files.items():
            canonical = NAMES.to_herd(name)
            if canonical is not None:
                out[canonical] = (file, name)
        return out

    def _open(self, file: Path) -> Any:
        """The safetensors handle of ``file``, opened once; a garbage header is a named error."""
        handle = self._files.get(file)
        if handle is None:
            if not file.is_file():
                raise CheckpointError(f"{file}: shard listed in the index is missing")
            try:
                handle = safe_open(str(file), framework="pt")
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
            self._files[file] = handle
        return handle

    def _locate(self, name: str) -> tuple[Path, str]:
        """The file holding the canonical tensor ``name`` and its name there."""
        if name == "output.weight" and name not in self._where and self.config.tie_embeddings:
            name = "tok_embeddings.weight"
        try:
            return self._where[name]
        except KeyError:
            raise MissingTensorError(f"{self.path}: tensor {NAMES.to_format(name)} is missing") from None

    def storage(self, name: str) -> tuple[str, int]:
        file, key = self._locate(name)
        try:
            view = self._open(file).get_slice(key)
            return storage_name(view.get_dtype()), math.prod(view.get_shape())
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{file}: cannot read the header of tensor {key} ({exc})") from None

    def get(self, name: str) -> torch.Tensor:
        file, key = self._locate(name)
        try:
            tensor = self._open(file).get_tensor(key)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{file}: cannot read tensor {key} ({exc})") from None
        return check_shape(self.config, name, tensor, file)

    def close(self) -> None:
        self._files.clear()


# ---- writing -------------------------------------------------------------------------------------


def write_hf(
    dst: Path,
    info: CheckpointInfo,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Write a Hugging Face Llama directory atomically, streaming tensors into shards.

    ``tensors``: canonical names, ``score.weight`` included for a reward model.
    ``extra_config``: keys merged into ``config.json`` over the Llama ones
    (a reward model's architecture, labels and pad id).
    """
    dst = Path(dst)
    with staged_checkpoint(dst, "hf") as tmp:
        shards: list[list[str]] = []
        pending: dict[str, torch.Tensor] = {}
        pending_bytes = 0
        seen_dtype: torch.dtype | None = None
        total = 0

        def flush() -> None:
            nonlocal pending, pending_bytes
            if pending:
                save_file(pending, str(tmp / f"part-{len(shards):05d}"), metadata={"format": "pt"})
                shards.append(list(pending))
                pending, pending_bytes = {}, 0

        for name, tensor in tensors:
            if dtype is not None:
                tensor = tensor.to(dtype)
            seen_dtype = seen_dtype or tensor.dtype
            if pending and pending_bytes + tensor.nbytes > max_shard_bytes:
                flush()
            pending[NAMES.to_format(name)] = tensor.contiguous()
            pending_bytes += tensor.nbytes
            total += tensor.nbytes
        flush()
        if len(shards) == 1:
            (tmp / "part-00000").rename(tmp / SINGLE_NAME)
        else:
            weight_map = {}
            for i, names in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                (tmp / f"part-{i:05d}").rename(tmp / fname)
                weight_map |= dict.fromkeys(names, fname)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        copy_side_files(info, tmp)
        config = config_to_hf(info.config, seen_dtype) | (extra_config or {})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dst
