"""herd's GGUF container (herd.io.gguf) against the gguf package's own reader and writer."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType

from herd.errors import CheckpointError
from herd.io.gguf import GGUFError, GGUFFile, TensorSlot, is_gguf, tensor_nbytes, write_gguf_file


def test_container_matches_the_gguf_package(smollm2_gguf: Path) -> None:
    """SmolLM2's Q4_1 file: the same metadata (values and types), tensor directory and tensor bytes."""
    reference = gguf.GGUFReader(smollm2_gguf)
    fields = {
        k: f for k, f in reference.fields.items() if not k.startswith("GGUF.")
    }  # its header pseudo-keys
    with GGUFFile(smollm2_gguf) as ours:
        assert ours.version == reference.fields["GGUF.version"].contents()
        assert list(ours.metadata) == list(fields)
        for key, field in fields.items():
            value = ours.metadata[key]
            assert value.value == field.contents(), key
            assert [value.type, *([value.sub_type] if value.sub_type is not None else [])] == field.types, key
        assert ours.metadata_values()["tokenizer.ggml.model"] == "gpt2"
        assert list(ours.tensors) == [t.name for t in reference.tensors]
        for tensor in reference.tensors:
            entry = ours.tensors[tensor.name]
            assert entry.shape == tuple(reversed(tensor.shape.tolist()))
            assert (entry.ggml_type, entry.start, entry.nbytes) == (
                tensor.tensor_type,
                tensor.data_offset,
                tensor.n_bytes,
            )
            assert ours.raw(entry).tobytes() == tensor.data.tobytes(), tensor.name


def test_every_value_type_and_written_tensors_read_back(tmp_path: Path) -> None:
    """A file written by write_gguf_file (metadata of every type, F32 and Q8_0 tensors) reads back exactly."""
    values = {
        "t.u8": (7, GGUFValueType.UINT8),
        "t.i8": (-7, GGUFValueType.INT8),
        "t.u16": (65535, GGUFValueType.UINT16),
        "t.i16": (-300, GGUFValueType.INT16),
        "t.u32": (2**32 - 1, GGUFValueType.UINT32),
        "t.i32": (-(2**31), GGUFValueType.INT32),
        "t.u64": (2**64 - 1, GGUFValueType.UINT64),
        "t.i64": (-(2**63), GGUFValueType.INT64),
        "t.f32": (0.5, GGUFValueType.FLOAT32),
        "t.f64": (1e-300, GGUFValueType.FLOAT64),
        "t.bool": (True, GGUFValueType.BOOL),
        "t.str": ("héllo", GGUFValueType.STRING),
    }
    rng = np.random.default_rng(0)
    norm, weight = rng.standard_normal(8).astype(np.float32), rng.standard_normal((4, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(weight, Q.Q8_0)
    directory = [TensorSlot("norm", (8,), Q.F32), TensorSlot("weight", (4, 64), Q.Q8_0)]

    def add_metadata(writer: gguf.GGUFWriter) -> None:
        for key, (value, vtype) in values.items():
            writer.add_key_value(key, value, vtype)
        writer.add_array("t.ints", [1, 2, 3])
        writer.add_array("t.strs", ["a", "bc"])

    path = tmp_path / "t.gguf"
    write_gguf_file(path, "llama", add_metadata, directory, iter([norm, q8]))
    assert is_gguf(path) and not is_gguf(tmp_path) and not is_gguf(tmp_path / "missing.gguf")
    with GGUFFile(path) as file:
        for key, (value, vtype) in values.items():
            assert (file.get(key), file.metadata[key].type) == (value, vtype), key
        assert file.get("t.ints") == [1, 2, 3] and file.get("t.strs") == ["a", "bc"]
        assert file.get("general.architecture") == "llama"
        assert file.tensors["weight"].nbytes == tensor_nbytes((4, 64), Q.Q8_0) == q8.nbytes
        assert np.array_equal(file.decode(file.tensors["norm"]).numpy(), norm)
        expected = gguf.quants.dequantize(q8, Q.Q8_0)
        assert np.array_equal(file.decode(file.tensors["weight"]).numpy(), expected)
    assert [t.name for t in gguf.GGUFReader(path).tensors] == ["norm", "weight"]


def test_writer_refuses_data_that_does_not_fit_the_directory(tmp_path: Path) -> None:
    slot = TensorSlot("norm", (8,), Q.F32)
    with pytest.raises(GGUFError, match=r"tensor norm \(F32, shape \(8,\)\) takes 32 bytes, got 16"):
        write_gguf_file(tmp_path / "a.gguf", "llama", lambda w: None, [slot], [np.zeros(4, np.float32)])
    with pytest.raises(GGUFError, match="no data for tensor norm"):
        write_gguf_file(tmp_path / "b.gguf", "llama", lambda w: None, [slot], [])


def test_defects_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    """GGUFError is a CheckpointError, so the checkpoint readers' callers see what they always saw."""
    cases = {
        "empty.gguf": (b"", "empty file"),
        "magic.gguf": (b"GGML" + bytes(20), "not a GGUF file"),
        "short.gguf": (b"GGUF\x03\x00\x00\x00", r"truncated or corrupt GGUF file \(tensor count"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as info:
            GGUFFile(path)
        assert isinstance(info.value, GGUFError) and str(path) in str(info.value)


def test_the_old_module_is_a_deprecated_alias() -> None:
    sys.modules.pop("herd.checkpoint.gguf_file", None)
    with pytest.warns(DeprecationWarning, match="herd.io.gguf"):
        old = importlib.import_module("herd.checkpoint.gguf_file")
    assert old.GGUFFile is GGUFFile and old.GGUF_MAGIC == b"GGUF"


def test_the_tokenizer_reads_vocabularies_through_herds_parser(
    smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One parser reads every GGUF file: the vocabulary loads with gguf.GGUFReader out of the way."""
    from herd.tokenizer import read_gguf_tokenizer

    reference = gguf.GGUFReader(smollm2_gguf)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("gguf.GGUFReader used to read a vocabulary")

    monkeypatch.setattr(gguf.GGUFReader, "__init__", refuse)
    tokenizer = read_gguf_tokenizer(smollm2_gguf)
    assert tokenizer.vocab_size == len(GGUFFile(smollm2_gguf).get("tokenizer.ggml.tokens"))
    with pytest.warns(DeprecationWarning, match="herd.io.gguf.GGUFFile"):
        again = read_gguf_tokenizer(reference)  # an open gguf.GGUFReader: read again from its file
    assert again.encode("The capital of France is") == tokenizer.encode("The capital of France is")
