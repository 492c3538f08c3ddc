"""GGUF read/write (docs/spec.md §1 checkpoint interop) against transformers, llama.cpp and the gguf package.

- The real SmolLM2-135M Q4_1 file: herd's logits equal transformers' (both
  dequantize the same weights) and 32 greedy tokens agree.
- Every ggml type herd must read (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K),
  produced by llama.cpp's own quantizer, decodes exactly as ``gguf.quants``
  does and close to the original weights.
- Files herd writes load in llama.cpp (llama-cpp-python) and compute herd's logits.
- HF → GGUF(F32) → HF is bit-exact; defective files raise a one-line CheckpointError.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValue, GGUFValueType

import herd
from herd.checkpoint.base import CheckpointInfo, tensor_names
from herd.checkpoint.gguf import NAMES, GGUFReader, write_gguf
from herd.checkpoint.hf import HFReader, write_hf
from herd.checkpoint.load import model_tensors
from herd.checkpoint.permute import halves_to_interleaved
from herd.errors import CheckpointError
from herd.io.gguf import GGUFFile
from herd.model.build import build_model
from herd.model.config import ModelConfig
from herd.model.presets import get_preset
from herd.model.transformer import Transformer

# ---- helpers -------------------------------------------------------------------------------------


def spm_vocab(n: int) -> dict[str, GGUFValue]:
    """A minimal SentencePiece-style vocabulary of ``n`` pieces, enough for llama.cpp to load a model."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"▁t{i}" for i in range(n - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n - 259)
    return {
        "tokenizer.ggml.model": GGUFValue("llama", GGUFValueType.STRING),
        "tokenizer.ggml.tokens": GGUFValue(tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
        "tokenizer.ggml.scores": GGUFValue([0.0] * n, GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
        "tokenizer.ggml.token_type": GGUFValue(types, GGUFValueType.ARRAY, GGUFValueType.INT32),
    }


def tiny_model(config: ModelConfig) -> Transformer:
    """A random model with weights large enough (std 0.1) that logits differ visibly between tokens."""
    model = build_model(config, seed=0).eval()
    model.init_weights(std=0.1, seed=0)
    return model


def write_tiny(path: Path, model: Transformer, dtype: str = "f32") -> Path:
    info = CheckpointInfo(model.config, {"gguf_tokenizer": spm_vocab(model.config.vocab_size)})
    return write_gguf(path, info, model_tensors(model), dtype=dtype)


def llama_cpp_logits(path: Path, ids: list[int]) -> torch.Tensor:
    """Logits of every position from llama.cpp, with an fp32 KV cache (its default is F16)."""
    f32 = 0  # GGML_TYPE_F32
    llm = llama_cpp.Llama(
        model_path=str(path), logits_all=True, n_ctx=64, verbose=False, type_k=f32, type_v=f32, n_threads=2
    )
    llm.eval(ids)
    out = torch.from_numpy(np.array(llm.scores[: len(ids)]))
    llm.close()
    return out


def herd_logits(model: Transformer, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].float()


def token_ids(vocab: int, n: int = 24) -> list[int]:
    return torch.randint(3, vocab, (n,), generator=torch.Generator().manual_seed(1)).tolist()


# ---- the real model: SmolLM2-135M Q4_1 -----------------------------------------------------------

SMOLLM2_PROMPT = [1, 504, 3575, 282, 4649, 314]  # "<|im_start|>The capital of France is"


@pytest.fixture(scope="module")
def smollm2_herd(smollm2_gguf: Path) -> Transformer:
    return herd.load_model(smollm2_gguf)


@pytest.fixture(scope="module")
def smollm2_transformers(smollm2_gguf: Path) -> torch.nn.Module:
    """transformers loading the same file with ``gguf_file=`` (its own reader, dequantization and q/k order)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, torch_dtype=torch.float32
    )
    return model.eval()


def test_smollm2_config(smollm2_gguf: Path) -> None:
    with GGUFReader(smollm2_gguf) as reader:
        c = reader.config
        assert (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim) == (576, 30, 9, 3, 1536)
        assert (c.vocab_size, c.rope_theta, c.norm_eps, c.head_dim) == (49152, 1e5, 1e-5, 64)
        assert c.tie_embeddings and c.rope_scaling is None and c.max_seq_len == 8192
        tokenizer = reader.info.extras["gguf_tokenizer"]
        assert tokenizer["tokenizer.ggml.model"].value == "gpt2"
        assert len(tokenizer["tokenizer.ggml.tokens"].value) == 49152
        assert "<|im_start|>" in tokenizer["tokenizer.chat_template"].value


@pytest.mark.slow
def test_smollm2_logits_and_greedy_match_transformers(
    smollm2_herd: Transformer, smollm2_transformers: torch.nn.Module
) -> None:
    ids = torch.tensor([SMOLLM2_PROMPT])
    with torch.no_grad():
        ours = smollm2_herd(ids)
        theirs = smollm2_transformers(ids).logits
    # Same Q4_1 weights dequantized by both, same fp32 math: measured max |Δ| = 0.0 (logits up to ~31).
    assert (ours - theirs).abs().max().item() <= 1e-3

    cache = smollm2_herd.make_cache(1, 64)
    tokens, generated, pos = ids, [], 0
    with torch.no_grad():
        for _ in range(32):
            logits = smollm2_herd(tokens, start_pos=pos, cache=cache)
            pos += tokens.shape[1]
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            generated.append(tokens.item())
        reference = smollm2_transformers.generate(
            ids, do_sample=False, max_new_tokens=32, min_new_tokens=32, attention_mask=torch.ones_like(ids)
        )
    assert generated == reference[0, ids.shape[1] :].tolist()


def test_smollm2_tokenizer_metadata_carries_into_written_gguf(smollm2_gguf: Path, tmp_path: Path) -> None:
    """GGUF → GGUF copies ``tokenizer.*``: llama.cpp tokenizes with the copy exactly as with the original."""
    with GGUFReader(smollm2_gguf) as reader:
        tokenizer = reader.info.extras["gguf_tokenizer"]
    config = ModelConfig(dim=64, n_layers=1, n_heads=4, vocab_size=49152, hidden_dim=128, tie_embeddings=True)
    model = build_model(config)
    out = write_gguf(
        tmp_path / "tiny.gguf", CheckpointInfo(config, {"gguf_tokenizer": tokenizer}), model_tensors(model)
    )
    assert GGUFReader(out).info.extras["gguf_tokenizer"] == tokenizer
    text = b"<|im_start|>user\nHello, GGUF world! 123<|im_end|>"
    original = llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    copy = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    assert copy.tokenize(text, special=True) == original.tokenize(text, special=True)


# ---- dequantization of every type, quantized by llama.cpp itself ---------------------------------

# ftype for llama.cpp's quantizer → the ggml types it must produce, and the largest relative
# Frobenius error each type may show against the original fp32 weights.
QUANT_FTYPES = {
    "F16": (llama_cpp.LLAMA_FTYPE_MOSTLY_F16, {Q.F16}),
    "BF16": (llama_cpp.LLAMA_FTYPE_MOSTLY_BF16, {Q.BF16}),
    "Q8_0": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, {Q.Q8_0}),
    "Q4_0": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, {Q.Q4_0}),
    "Q4_1": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1, {Q.Q4_1}),
    "Q4_K_M": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, {Q.Q4_K, Q.Q6_K}),
}
REL_ERROR = {
    Q.F32: 0.0,
    Q.F16: 1e-3,
    Q.BF16: 5e-3,
    Q.Q8_0: 1e-2,
    Q.Q6_K: 3e-2,
    Q.Q4_K: 0.12,
    Q.Q4_1: 0.12,
    Q.Q4_0: 0.15,
}
# Rows of 256 values: K-quant super-blocks fit every weight, so llama.cpp falls back nowhere.
QUANT_CONFIG = ModelConfig(dim=256, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=512, hidden_dim=512)


@pytest.fixture(scope="module")
def quant_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Transformer, Path]:
    model = tiny_model(QUANT_CONFIG)
    return model, write_tiny(tmp_path_factory.mktemp("quant") / "f32.gguf", model)


def llama_cpp_quantize(src: Path, dst: Path, ftype: int) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0
    return dst


@pytest.mark.parametrize("ftype", list(QUANT_FTYPES))
def test_dequantize_matches_gguf_reference(
    ftype: str, quant_source: tuple[Transformer, Path], tmp_path: Path
) -> None:
    model, f32_path = quant_source
    llama_ftype, must_have = QUANT_FTYPES[ftype]
    path = llama_cpp_quantize(f32_path, tmp_path / f"{ftype}.gguf", llama_ftype)
    reference = {t.name: t for t in gguf.GGUFReader(path).tensors}  # the gguf package's own parser
    seen = {t.tensor_type for t in reference.values()}
    assert must_have <= seen, seen
    original = dict(model_tensors(model))
    with GGUFReader(path) as reader:
        for name in tensor_names(QUANT_CONFIG):
            ours = reader.get(name).float()
            ref = reference[NAMES.to_format(name)]
            expected = torch.from_numpy(gguf.quants.dequantize(ref.data, ref.tensor_type).copy())
            heads = {"wq": QUANT_CONFIG.n_heads, "wk": QUANT_CONFIG.n_kv_heads}.get(name.split(".")[-2])
            in_file_order = halves_to_interleaved(ours, heads) if heads else ours
            assert torch.equal(in_file_order, expected.reshape(ours.shape)), name
            err = ((ours - original[name]).norm() / original[name].norm()).item()
            assert err <= REL_ERROR[ref.tensor_type], (name, ref.tensor_type.name, err)


def test_quantized_logits_follow_llama_cpp(quant_source: tuple[Transformer, Path], tmp_path: Path) -> None:
    """herd on a Q4_K_M file vs llama.cpp on it: llama.cpp also rounds activations to 8 bits."""
    _, f32_path = quant_source
    path = llama_cpp_quantize(f32_path, tmp_path / "q4km.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)
    ids = token_ids(QUANT_CONFIG.vocab_size)
    ours, theirs = herd_logits(herd.load_model(path), ids), llama_cpp_logits(path, ids)
    assert ((ours - theirs).norm() / theirs.norm()).item() < 0.05


def test_f16_file_reads_as_f16(quant_source: tuple[Transformer, Path], tmp_path: Path) -> None:
    _, f32_path = quant_source
    path = llama_cpp_quantize(f32_path, tmp_path / "f16.gguf", llama_cpp.LLAMA_FTYPE_MOSTLY_F16)
    assert herd.load_model(path).tok_embeddings.weight.dtype == torch.float16
    assert herd.load_model(f32_path).tok_embeddings.weight.dtype == torch.float32


# ---- files herd writes, loaded by llama.cpp ------------------------------------------------------


def test_written_f32_matches_llama_cpp_for_every_family(family_config: ModelConfig, tmp_path: Path) -> None:
    config = family_config
    model = tiny_model(config)
    path = write_tiny(tmp_path / "model.gguf", model)
    with GGUFReader(path) as reader:
        assert reader.config == config  # incl. llama3 scaling recovered from rope_freqs.weight
    assert ("output.weight" in GGUFFile(path).tensors) != config.tie_embeddings
    ids = token_ids(config.vocab_size)
    ours, theirs = herd_logits(model, ids), llama_cpp_logits(path, ids)
    # fp32 weights, fp32 KV cache: measured max |Δ| ≤ 8e-6 on logits of magnitude 3–6.
    assert (ours - theirs).abs().max().item() <= 5e-5
    if config.rope_scaling is not None:  # the scaling reached llama.cpp: without it the logits differ
        unscaled = Transformer(config.replace(rope_scaling=None))
        unscaled.load_state_dict(model.state_dict())
        assert (herd_logits(unscaled.eval(), ids) - theirs).abs().max().item() > 1e-3


# dtype → (max |Δ| herd vs llama.cpp on the same file, max |Δ| written-and-read vs the original model)
# on logits of magnitude ~3. Measured: f16 0.0034 / 0.0040, bf16 0.024 / 0.024, q8_0 0.066 / 0.083.
# llama.cpp rounds activations to F16, BF16 or Q8_0 inside its matmuls; herd computes in fp32 from
# the decoded weights, so the two differ by about what the weight rounding itself costs.
WRITE_TOLERANCE = {"f16": (1e-2, 1e-2), "bf16": (6e-2, 6e-2), "q8_0": (0.15, 0.2)}


@pytest.mark.parametrize("dtype", list(WRITE_TOLERANCE))
def test_written_dtypes_load_in_llama_cpp_and_herd(dtype: str, tmp_path: Path) -> None:
    config = get_preset("llama2-tiny-gqa")
    model = tiny_model(config)
    path = write_tiny(tmp_path / f"{dtype}.gguf", model, dtype)
    types = {e.ggml_type for e in GGUFFile(path).tensors.values() if len(e.shape) == 2}
    assert types == {Q[dtype.upper()]}
    ids = token_ids(config.vocab_size)
    read_back = herd_logits(herd.load_model(path, dtype="fp32"), ids)
    vs_llama_cpp, vs_original = WRITE_TOLERANCE[dtype]
    assert (read_back - llama_cpp_logits(path, ids)).abs().max().item() <= vs_llama_cpp
    assert (read_back - herd_logits(model, ids)).abs().max().item() <= vs_original


def test_q8_0_falls_back_to_f16_where_rows_do_not_fill_blocks(tmp_path: Path) -> None:
    config = ModelConfig(dim=48, n_layers=1, n_heads=3, vocab_size=512, hidden_dim=64)
    model = tiny_model(config)
    path = write_tiny(tmp_path / "q8.gguf", model, "q8_0")
    types = {e.name: e.ggml_type for e in GGUFFile(path).tensors.values()}
    assert types["blk.0.ffn_down.weight"] == Q.Q8_0  # rows of 64
    assert types["blk.0.ffn_up.weight"] == Q.F16  # rows of 48
    ids = token_ids(config.vocab_size)
    read_back = herd_logits(herd.load_model(path), ids)
    assert (read_back - llama_cpp_logits(path, ids)).abs().max().item() <= 0.15


def test_hf_gguf_hf_round_trip_is_bit_exact(tmp_path: Path) -> None:
    config = get_preset("llama3.1-tiny")
    model = tiny_model(config)
    hf = write_hf(tmp_path / "hf", CheckpointInfo(config), model_tensors(model))
    with HFReader(hf) as reader:
        gguf_path = write_gguf(tmp_path / "m.gguf", reader.info, reader.tensors())
    with GGUFReader(gguf_path) as reader:
        back = write_hf(tmp_path / "back", reader.info, reader.tensors())
    with HFReader(hf) as a, HFReader(back) as b:
        assert a.config == b.config
        for (name, x), (_, y) in zip(a.tensors(), b.tensors(), strict=True):
            assert x.dtype == y.dtype == torch.float32 and torch.equal(x, y), name


def test_writer_streams_out_of_order_input_and_is_atomic(tmp_path: Path) -> None:
    config = get_preset("llama2-tiny")
    model = tiny_model(config)
    info = CheckpointInfo(config)
    ordered = write_gguf(tmp_path / "a.gguf", info, model_tensors(model))
    shuffled = write_gguf(tmp_path / "b.gguf", info, reversed(model_tensors(model)))
    assert ordered.read_bytes() == shuffled.read_bytes()
    with pytest.raises(CheckpointError, match=r"no tensor norm\.weight"):
        write_gguf(tmp_path / "c.gguf", info, [t for t in model_tensors(model) if t[0] != "norm.weight"])
    assert not (tmp_path / "c.gguf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf"]  # no temporary left behind


# ---- defective files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("good") / "good.gguf", tiny_model(get_preset("llama2-tiny")))


def broken(good: Path, dst: Path, edit: Callable[[bytearray], object]) -> Path:
    data = bytearray(good.read_bytes())
    edit(data)
    dst.write_bytes(bytes(data))
    return dst


def set_tensor_type(data: bytearray, tensor: str, ggml_type: int) -> None:
    """Overwrite the type field of ``tensor``'s directory entry (after its name, n_dims and dims)."""
    at = data.index(tensor.encode()) + len(tensor)
    (n_dims,) = struct.unpack_from("<I", data, at)
    at += 4 + 8 * n_dims
    data[at : at + 4] = struct.pack("<I", ggml_type)


@pytest.mark.parametrize(
    ("case", "edit", "message"),
    [
        (
            "truncated-data",
            lambda d: d.__delitem__(slice(len(d) // 2, None)),
            r"tensor .* needs bytes .*truncated",
        ),
        ("truncated-header", lambda d: d.__delitem__(slice(200, None)), r"truncated or corrupt GGUF file"),
        ("bad-magic", lambda d: d.__setitem__(slice(0, 4), b"GGML"), r"not a GGUF file"),
        (
            "unknown-type",
            lambda d: set_tensor_type(d, "blk.0.attn_q.weight", 99),
            r"blk.0.attn_q.weight .*type 99",
        ),
        ("bad-version", lambda d: d.__setitem__(slice(4, 8), struct.pack("<I", 7)), r"version 7"),
    ],
)
def test_corrupt_files_raise_checkpoint_error(
    case: str, edit: Callable[[bytearray], object], message: str, good_file: Path, tmp_path: Path
) -> None:
    path = broken(good_file, tmp_path / f"{case}.gguf", edit)
    with pytest.raises(CheckpointError, match=message) as exc:
        GGUFReader(path)
    assert str(path) in str(exc.value)


def test_type_herd_cannot_dequantize_names_tensor(good_file: Path, tmp_path: Path) -> None:
    # I32 has F32's size, so the file stays consistent; it is not a weight type anyone can decode.
    path = broken(good_file, tmp_path / "i32.gguf", lambda d: set_tensor_type(d, "output_norm.weight", Q.I32))
    with GGUFReader(path) as reader, pytest.raises(CheckpointError, match=r"output_norm.weight .*I32") as exc:
        reader.get("norm.weight")
    assert str(path) in str(exc.value)


def test_wrong_architecture_and_empty_file(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "gpt2.gguf", "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match=r"gpt2\.gguf: general.architecture is 'gpt2'"):
        herd.load_model(tmp_path / "gpt2.gguf")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.gguf"):
        GGUFReader(empty)
