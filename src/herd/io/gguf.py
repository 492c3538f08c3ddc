"""The GGUF container: header, typed metadata, tensor directory and memory-mapped tensor data.

Layout (llama.cpp's ``ggml/docs/gguf.md``, versions 2 and 3, little-endian):
magic ``GGUF``, ``uint32`` version, ``uint64`` tensor count, ``uint64``
metadata count; then the metadata key/value pairs; then per tensor its name,
``uint32`` number of dimensions, ``uint64`` dimensions (fastest-varying first,
i.e. reversed against numpy/torch), ``uint32`` ggml type and ``uint64`` offset
into the data section, which starts at the next multiple of
``general.alignment`` (default 32).

This is the one GGUF parser in herd: model weights (:mod:`herd.checkpoint.gguf`)
and vocabularies (:mod:`herd.tokenizer.gguf_vocab`) are both read through
:class:`GGUFFile`. herd parses the container itself instead of using
``gguf.GGUFReader`` so that every defect of a file (bad magic, truncation, a
tensor reaching past the end, an unknown tensor type) becomes a one-line
:class:`GGUFError` that names the file, the tensor and the problem, and so
that opening a file stays cheap: tensor data is only memory-mapped here and
decoded by the caller on demand.

Writing (:func:`write_gguf_file`) declares the tensor directory up front from
shapes and types, so tensors are streamed: each is written as it arrives and
never held with the others. The metadata key/values are encoded by
``gguf.GGUFWriter``, whose typed ``add_*`` methods name llama.cpp's keys.
What a file holds (which keys, which tensors) is the caller's business.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValue, GGUFValueType
from gguf.quants import dequantize, quant_shape_to_byte_shape

from herd.errors import CheckpointError

if TYPE_CHECKING:
    import torch

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# GGUF dimensions are uint64; numpy (and llama.cpp) index with int64.
MAX_DIM = 2**63

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
    GGUFValueType.BOOL: "?",
}


class GGUFError(CheckpointError):
    """A GGUF file is empty, truncated, corrupt or of a version or tensor type herd does not read.

    A :class:`CheckpointError`, since GGUF is llama.cpp's checkpoint format; a
    reader of vocabularies reports it as its own error.
    """


def is_gguf(path: Path | str) -> bool:
    """Whether ``path`` is a file that starts with GGUF's magic bytes (False for a directory or a missing path).

    A file that exists but cannot be read raises the ``OSError``, so that a
    permission problem is not reported as a wrong format.
    """
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC


def tensor_nbytes(shape: Sequence[int], ggml_type: GGMLQuantizationType) -> int:
    """The bytes a tensor of ``shape`` (numpy order) takes in ``ggml_type``: whole blocks of its row values.

    Python integers, so a product of corrupt dimensions past 2**64 cannot wrap to a small size.
    """
    block, type_size = GGML_QUANT_SIZES[ggml_type]
    return math.prod(shape) // block * type_size


@dataclass(frozen=True)
class TensorEntry:
    """One entry of the tensor directory: where a tensor's bytes lie and how to decode them."""

    name: str
    shape: tuple[int, ...]  # numpy/torch order (the file's dimensions reversed)
    ggml_type: GGMLQuantizationType
    start: int  # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return self.ggml_type.name


class _Cursor:
    """Sequential little-endian reads over the file's bytes with bounds checks."""

    def __init__(self, data: np.ndarray, path: Path) -> None:
        self.data = data
        self.buf = memoryview(data)
        self.path = path
        self.pos = 0

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise GGUFError(
                f"{self.path}: truncated or corrupt GGUF file ({what} at byte {self.pos} needs {n} bytes, "
                f"the file has {len(self.data)})"
            )

    def scalar(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, what: str) -> str:
        n = self.scalar("Q", what)
        self._need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: corrupt GGUF file ({what} is not UTF-8)") from None

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.scalar("I", what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise GGUFError(f"{self.path}: corrupt GGUF file ({what} has unknown value type {raw})") from None

    def value(self, vtype: GGUFValueType, what: str) -> GGUFValue:
        if vtype == GGUFValueType.STRING:
            return GGUFValue(self.string(what), vtype)
        if vtype in _SCALARS:
            return GGUFValue(self.scalar(_SCALARS[vtype], what), vtype)
        sub = self.value_type(what)
        count = self.scalar("Q", what)
        if sub in _SCALARS:
            fmt = "<" + _SCALARS[sub]
            self._need(count * struct.calcsize(fmt), what)
            values = np.frombuffer(self.buf, dtype=np.dtype(fmt), count=count, offset=self.pos)
            self.pos += values.nbytes
            return GGUFValue(values.tolist(), vtype, sub)
        if sub == GGUFValueType.STRING:
            return GGUFValue([self.string(what) for _ in range(count)], vtype, sub)
        raise GGUFError(f"{self.path}: {what} is a nested array, which herd does not read")


class GGUFFile:
    """A parsed GGUF file: ``metadata`` (key → typed value) and ``tensors`` (name → entry).

    Usable as a context manager, which :meth:`close` s the memory map on exit.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except ValueError:  # numpy refuses to map an empty file
            raise GGUFError(f"{self.path}: empty file, not a GGUF file") from None
        except OSError as exc:
            raise GGUFError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        cur = _Cursor(self.data, self.path)
        magic = bytes(self.data[:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{self.path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
        cur.pos = 4
        self.version = cur.scalar("I", "version")
        if self.version not in SUPPORTED_VERSIONS:
            raise GGUFError(
                f"{self.path}: GGUF version {self.version} is not supported (herd reads versions 2 and 3)"
            )
        n_tensors = cur.scalar("Q", "tensor count")
        n_kv = cur.scalar("Q", "metadata count")
        self.metadata: dict[str, GGUFValue] = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}")
            self.metadata[key] = cur.value(cur.value_type(f"type of {key}"), f"metadata {key}")
        infos = [self._tensor_info(cur, i) for i in range(n_tensors)]
        alignment = self.get("general.alignment", DEFAULT_ALIGNMENT)
        if (
            isinstance(alignment, bool)
            or not isinstance(alignment, int)
            or alignment <= 0
            or alignment & (alignment - 1)
        ):
            raise GGUFError(f"{self.path}: general.alignment {alignment!r} is not a power of two")
        data_start = -(-cur.pos // alignment) * alignment
        self.tensors: dict[str, TensorEntry] = {}
        for name, shape, ggml_type, offset in infos:
            if name in self.tensors:
                raise GGUFError(f"{self.path}: tensor {name} appears twice")
            self.tensors[name] = self._entry(name, shape, ggml_type, data_start + offset)

    def _tensor_info(self, cur: _Cursor, i: int) -> tuple[str, tuple[int, ...], int, int]:
        name = cur.string(f"name of tensor #{i}")
        n_dims = cur.scalar("I", f"tensor {name}")
        if n_dims > 4:
            raise GGUFError(f"{self.path}: tensor {name} has {n_dims} dimensions (GGUF allows at most 4)")
        dims = [cur.scalar("Q", f"tensor {name}") for _ in range(n_dims)]
        ggml_type = cur.scalar("I", f"tensor {name}")
        offset = cur.scalar("Q", f"tensor {name}")
        return name, tuple(reversed(dims)), ggml_type, offset

    def _entry(self, name: str, shape: tuple[int, ...], raw_type: int, start: int) -> TensorEntry:
        try:
            ggml_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise GGUFError(
                f"{self.path}: tensor {name} has unknown ggml type {raw_type} (not a quantization type "
                "the gguf package knows; a newer llama.cpp format?)"
            ) from None
        block = GGML_QUANT_SIZES[ggml_type][0]
        if any(d >= MAX_DIM for d in shape):
            raise GGUFError(
                f"{self.path}: tensor {name} has shape {shape}: a dimension exceeds 2**63 - 1 (corrupt file)"
            )
        if shape and shape[-1] % block:
            raise GGUFError(
                f"{self.path}: tensor {name} ({ggml_type.name}) has rows of {shape[-1]} values, "
                f"not a multiple of the {block}-value block"
            )
        nbytes = tensor_nbytes(shape, ggml_type)
        if start + nbytes > len(self.data):
            raise GGUFError(
                f"{self.path}: tensor {name} ({ggml_type.name}, shape {shape}) needs bytes "
                f"{start}..{start + nbytes} but the file has only {len(self.data)} (truncated?)"
            )
        return TensorEntry(name, shape, ggml_type, start, nbytes)

    def get(self, key: str, default: Any = None) -> Any:
        """The plain value of metadata ``key`` (``default`` when absent)."""
        field = self.metadata.get(key)
        return default if field is None else field.value

    def metadata_values(self) -> dict[str, Any]:
        """Every metadata key → its plain Python value (str, int, float, bool or a list of them)."""
        return {key: field.value for key, field in self.metadata.items()}

    def raw(self, entry: TensorEntry) -> np.ndarray:
        """The tensor's bytes as a read-only view (no copy)."""
        return self.data[entry.start : entry.start + entry.nbytes]

    def decode(self, entry: TensorEntry) -> torch.Tensor:
        """The tensor as torch: F32/F16/BF16 keep their dtype, quantized types dequantize to fp32.

        Decoding is delegated to ``gguf.quants.dequantize`` (Q8_0, Q4_0, Q4_1, the
        K-quants, the IQ types, ...); a type it cannot decode is reported by name.
        PyTorch is imported here rather than with the module, so that reading
        a vocabulary does not load it.
        """
        import torch

        raw = self.raw(entry)
        t = entry.ggml_type
        if t == GGMLQuantizationType.F32:
            return torch.from_numpy(raw.view(np.float32).reshape(entry.shape).copy())
        if t == GGMLQuantizationType.F16:
            return torch.from_numpy(raw.view(np.float16).reshape(entry.shape).copy())
        if t == GGMLQuantizationType.BF16:
            return torch.from_numpy(raw.view(np.int16).reshape(entry.shape).copy()).view(torch.bfloat16)
        try:
            values = dequantize(raw.reshape(quant_shape_to_byte_shape(entry.shape, t)), t)
        except NotImplementedError:
            raise GGUFError(
                f"{self.path}: tensor {entry.name} has ggml type {t.name}, which herd cannot dequantize"
            ) from None
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    def close(self) -> None:
        """Drop the memory map (views handed out earlier keep it alive until they go)."""
        self.data = np.empty(0, dtype=np.uint8)

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class TensorSlot:
    """A tensor :func:`write_gguf_file` will store: its name, shape (numpy order) and ggml type."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.ggml_type)


def write_gguf_file(
    path: Path | str,
    arch: str,
    add_metadata: Callable[[gguf.GGUFWriter], None],
    directory: Sequence[TensorSlot],
    data: Iterable[np.ndarray],
) -> None:
    """Write a GGUF container to ``path``: header, metadata, the tensor directory, then the tensors.

    ``add_metadata`` adds the key/values through the ``gguf.GGUFWriter`` it is
    given (``general.architecture`` is ``arch``). ``data`` yields each tensor's
    encoded bytes in ``directory`` order; it is consumed lazily, so a caller
    can produce one tensor at a time, and each array must have exactly its
    slot's size. ``path`` is written in place: a caller that wants the file to
    appear only when whole writes to a temporary name and renames.
    """
    path = Path(path)
    writer = gguf.GGUFWriter(path, arch)
    try:
        add_metadata(writer)
        for slot in directory:
            writer.add_tensor_info(slot.name, slot.shape, np.float32, slot.nbytes, slot.ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        arrays = iter(data)
        for slot in directory:
            array = next(arrays, None)
            if array is None:
                raise GGUFError(f"{path}: no data for tensor {slot.name}")
            if array.nbytes != slot.nbytes:
                raise GGUFError(
                    f"{path}: tensor {slot.name} ({slot.ggml_type.name}, shape {slot.shape}) "
                    f"takes {slot.nbytes} bytes, got {array.nbytes}"
                )
            writer.write_tensor_data(array)
        if next(arrays, None) is not None:
            raise GGUFError(f"{path}: more tensors than the {len(directory)} of the directory")
    finally:
        writer.close()
