"""``herd model info``: tied embeddings, context length, stored dtype, readable sizes and typo hints."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gguf
import pytest
import torch

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.checkpoint.meta import write_meta
from herd.cli import main
from herd.errors import ConfigError
from herd.model.build import build_model
from herd.model.info import format_bytes
from herd.model.presets import close_presets, get_preset


def info_json(capsys: pytest.CaptureFixture[str], spec: str) -> dict:
    assert main(["model", "info", spec, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def info_rows(capsys: pytest.CaptureFixture[str], spec: str) -> dict[str, str]:
    assert main(["model", "info", spec]) == 0
    rows = [line.split("  ", 1) for line in capsys.readouterr().out.splitlines()]
    return {key.strip(): value.strip() for key, value in rows}


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1536, "1.50 KiB"),
        (3 * 2**20, "3.00 MiB"),
        (2**30 - 1, "1024.00 MiB"),  # just below 1 GiB is still MiB
        (2**30, "1.00 GiB"),
        (1_623_413_555_200, "1511.92 GiB"),  # llama3.1-405b in fp32: 4 x 405,853,388,800
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_preset_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = info_rows(capsys, "smollm2-135m")
    assert rows["tied embeddings"] == "yes" and rows["context length"] == "8,192"
    assert rows["stored dtype"] == "fp32"
    # 134,515,008 parameters: x4 bytes = 538,060,032 = 513.13 MiB; x2 = 256.57 MiB
    assert rows["weights fp32 / bf16"] == "513.13 MiB / 256.57 MiB"
    assert rows["weights int8 / int4"] == "128.28 MiB / 64.14 MiB"
    # 2 (k, v) x 30 layers x 3 kv heads x 64 x 2 bytes = 23,040 bytes
    assert rows["KV cache / token (bf16)"] == "22.50 KiB"
    rows = info_rows(capsys, "llama3.1-405b")
    assert rows["tied embeddings"] == "no" and rows["context length"] == "131,072"
    assert rows["weights fp32 / bf16"] == "1511.92 GiB / 755.96 GiB"


def test_json_carries_the_new_fields(capsys: pytest.CaptureFixture[str]) -> None:
    out = info_json(capsys, "llama3-8b")
    assert (out["tied_embeddings"], out["context_length"], out["dtype"]) == (False, 8192, "fp32")
    assert out["config"]["max_seq_len"] == 8192


@pytest.mark.parametrize(
    ("fmt", "dtype", "name"), [("hf", torch.bfloat16, "bf16"), ("meta", torch.float16, "fp16")]
)
def test_checkpoint_dtype_is_read_from_the_files(
    fmt: str, dtype: torch.dtype, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = get_preset("llama2-tiny").replace(tie_embeddings=fmt == "hf")
    tensors = model_tensors(build_model(config, dtype))
    writer = write_hf if fmt == "hf" else write_meta
    path = writer(tmp_path / fmt, CheckpointInfo(config), tensors)
    out = info_json(capsys, str(path))
    # params.json has no context length: herd infers Llama 2's 4096 from its RoPE theta
    context = {"hf": 256, "meta": 4096}[fmt]
    assert (out["dtype"], out["tied_embeddings"], out["context_length"]) == (name, fmt == "hf", context)


def test_gguf_dtype_lists_its_quantized_types_by_share(
    smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked against the gguf package's own reading of the tensor directory (2-D weights only)."""
    counts: Counter[str] = Counter()
    for tensor in gguf.GGUFReader(smollm2_gguf).tensors:
        if len(tensor.shape) == 2:
            counts[tensor.tensor_type.name.lower()] += int(tensor.n_elements)
    expected = "+".join(t for t, _ in counts.most_common())
    assert len(counts) > 1  # the file is mixed: the test must see the order
    out = info_json(capsys, str(smollm2_gguf))
    assert out["dtype"] == expected and out["tied_embeddings"] is True and out["context_length"] == 8192


def test_typo_of_a_preset_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "llama3-8bb"]) == 2
    assert (
        capsys.readouterr().err.strip() == "herd: error: unknown preset 'llama3-8bb'; did you mean llama3-8b?"
    )
    assert close_presets("llama3.1-450b") == ["llama3.1-405b", "llama3.1-70b"]
    assert close_presets("Llama2-7B") == ["llama2-7b"]
    with pytest.raises(ConfigError, match=r"^unknown preset 'llama2-7B'; did you mean llama2-7b\?$"):
        get_preset("llama2-7B")


def test_a_name_close_to_nothing_or_a_missing_path_is_not_called_a_typo(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert close_presets("llama9-1t") == []
    assert main(["model", "info", "llama9-1t"]) == 2
    assert "neither a preset nor an existing path" in capsys.readouterr().err
    assert main(["model", "info", "models/llama3-8bb"]) == 2
    assert capsys.readouterr().err.strip() == (
        "herd: error: models/llama3-8bb: neither a preset nor an existing path (presets: herd model presets)"
    )
    with pytest.raises(ConfigError, match="known presets: llama1-7b, "):
        get_preset("llama9-1t")


def test_a_gguf_of_metadata_only_has_no_stored_dtype(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "header.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    shape = {"embedding_length": 64, "block_count": 2, "attention.head_count": 4, "feed_forward_length": 256}
    for key, value in (shape | {"vocab_size": 512}).items():
        writer.add_uint32(f"llama.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    assert info_json(capsys, str(path))["dtype"] is None
    assert info_rows(capsys, str(path))["stored dtype"] == "none (no weights in the file)"
