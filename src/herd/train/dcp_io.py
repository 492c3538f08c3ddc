"""Reading torch.distributed.checkpoint (DCP) checkpoints without running code from them.

Out of the box, DCP's ``FileSystemReader`` unpickles a checkpoint's
``.metadata`` with ``pickle.load``, and its default planner unpickles every
non-tensor value (the optimizer's hyperparameters) with
``torch.load(weights_only=False)``: a checkpoint from someone else could run
any code on ``--resume``. :func:`load` closes both:

- ``.metadata`` goes through an unpickler that admits only the classes DCP's
  metadata is made of (:data:`_ALLOWED`; found by listing the globals that the
  checkpoints of one process, DDP, FSDP2 and tensor parallelism reference), and
  may only rebuild objects of those classes; its structure is then checked:
  entry types, shard file names that stay inside the checkpoint directory, byte
  ranges that those files hold (so a missing or truncated ``__R_N.distcp`` is
  named before any tensor is read);
- non-tensor values load with ``weights_only=True`` and must have the type of
  the value they replace;
- an error while reading a shard file names the file.

DCP stores no checksums: a bit flip inside a tensor's bytes reads back as a
different number and cannot be noticed here (one in a record's zip structure
can: the file is reported as unreadable).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path, PosixPath, PurePosixPath
from typing import Any, ClassVar

import torch
import torch.distributed.checkpoint as dcp
import torch.serialization
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint import filesystem as dcp_filesystem
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem
from torch.futures import Future

from herd.errors import CheckpointError, HerdError
from herd.paths import contained

METADATA_FILE = ".metadata"

_ALLOWED: dict[tuple[str, str], Any] = {
    **{
        (dcp_metadata.__name__, name): getattr(dcp_metadata, name)
        for name in (
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorProperties",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "_MEM_FORMAT_ENCODING",
        )
    },
    (dcp_filesystem.__name__, "_StorageInfo"): dcp_filesystem._StorageInfo,
    ("torch", "Size"): torch.Size,
    # Rebuilds a layout (``torch.strided``) by looking its name up in a table; calls nothing else.
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    # ``storage_meta.checkpoint_id``: the directory the checkpoint was written to.
    ("pathlib", "PosixPath"): PosixPath,
    ("pathlib", "PurePosixPath"): PurePosixPath,
}
# Objects the unpickler may fill in (BUILD): instances of the allowed classes, never a class or function.
_BUILDABLE = tuple(
    obj for obj in _ALLOWED.values() if isinstance(obj, type) and obj not in (PosixPath, PurePosixPath)
)


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something DCP metadata never needs (a global or a state change)."""


class _MetadataUnpickler(pickle._Unpickler):
    """``pickle`` restricted to DCP's metadata classes and torch dtypes.

    The pure-Python unpickler is used because its opcode table can be
    narrowed: BUILD (set an object's state) is allowed only on instances of
    the allowed classes, so a pickle cannot overwrite a class attribute either.
    """

    dispatch: ClassVar[dict[int, Callable[..., None]]] = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise _Refused(f"refers to {module}.{name}, which DCP metadata never holds")

    def _load_build(self) -> None:
        if not isinstance(self.stack[-2], _BUILDABLE):
            raise _Refused(f"sets the state of a {type(self.stack[-2]).__name__} object")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build


def _check(ok: bool, path: Path, problem: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({problem})")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(path: Path, fqn: Any, entry: Any) -> None:
    """One ``state_dict_metadata`` entry: bytes, or a tensor's dtype, size and chunks."""
    _check(isinstance(fqn, str), path, f"state key {fqn!r} is not a string")
    if isinstance(entry, dcp_metadata.BytesStorageMetadata):
        return
    _check(isinstance(entry, dcp_metadata.TensorStorageMetadata), path, f"{fqn}: unknown entry type")
    _check(
        isinstance(entry.properties, dcp_metadata.TensorProperties)
        and isinstance(entry.properties.dtype, torch.dtype),
        path,
        f"{fqn}: tensor properties",
    )
    _check(isinstance(entry.size, torch.Size), path, f"{fqn}: tensor size")
    _check(isinstance(entry.chunks, list), path, f"{fqn}: chunk list")
    for chunk in entry.chunks:
        _check(
            isinstance(chunk, dcp_metadata.ChunkStorageMetadata)
            and isinstance(chunk.offsets, torch.Size)
            and isinstance(chunk.sizes, torch.Size)
            and len(chunk.offsets) == len(chunk.sizes) == len(entry.size),
            path,
            f"{fqn}: chunk {chunk!r}",
        )


def _check_files(directory: Path, path: Path, storage: Any) -> None:
    """Every shard file the metadata names stays inside ``directory``, exists and holds its byte ranges."""
    _check(isinstance(storage, dict), path, "storage_data is not a table")
    needed: dict[str, int] = defaultdict(int)
    for index, info in storage.items():
        _check(isinstance(index, dcp_metadata.MetadataIndex), path, f"storage key {index!r}")
        _check(
            isinstance(info, dcp_filesystem._StorageInfo)
            and isinstance(info.relative_path, str)
            and _is_count(info.offset)
            and _is_count(info.length),
            path,
            f"storage entry of {index.fqn!r}",
        )
        needed[info.relative_path] = max(needed[info.relative_path], info.offset + info.length)
    for name, end in sorted(needed.items()):
        try:
            shard = contained(directory, name, path)
        except HerdError as exc:
            raise CheckpointError(str(exc)) from None
        if not shard.is_file():
            raise CheckpointError(f"{shard}: checkpoint shard file missing (named by {path})")
        size = shard.stat().st_size
        if size < end:
            raise CheckpointError(
                f"{shard}: truncated checkpoint shard: {size} bytes, the metadata names bytes up to {end}"
            )


def read_metadata(directory: Path) -> dcp_metadata.Metadata:
    """The checked ``.metadata`` of a DCP checkpoint directory (see the module docstring)."""
    path = Path(directory) / METADATA_FILE
    try:
        with path.open("rb") as file:
            metadata = _MetadataUnpickler(file).load()
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused checkpoint metadata: the pickle {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        RuntimeError,
    ) as exc:
        # What a truncated or garbled pickle raises inside the allowed constructors.
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({type(exc).__name__}: {exc})") from None
    _check(isinstance(metadata, dcp_metadata.Metadata), path, "not DCP metadata")
    _check(isinstance(metadata.state_dict_metadata, dict), path, "state_dict_metadata is not a table")
    for fqn, entry in metadata.state_dict_metadata.items():
        _check_entry(path, fqn, entry)
    _check_files(Path(directory), path, metadata.storage_data)
    return metadata


class _SafeReader(FileSystemReader):
    """DCP's file reader with checked metadata (read up front) and errors that name the shard file."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.directory = Path(directory)
        self._metadata = read_metadata(self.directory)

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        if kwargs.get("rank") is not None:  # DCP's fallback to per-rank files, which herd never writes
            raise CheckpointError(f"{self.directory}: no per-rank metadata in herd checkpoints")
        metadata = self._metadata
        if metadata.storage_meta is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """DCP's read, one shard file at a time, so that a failure names its file."""
        per_file: dict[str, list[ReadItem]] = defaultdict(list)
        for item in plan.items:
            per_file[self.storage_data[item.storage_index].relative_path].append(item)
        for name, items in per_file.items():
            try:
                super().read_data(dataclasses.replace(plan, items=items), planner).wait()
            except HerdError as exc:
                raise CheckpointError(f"{self.directory / name}: {exc}") from None
            except pickle.UnpicklingError:
                raise CheckpointError(
                    f"{self.directory / name}: refused a value that is not plain data (loading it could run code)"
                ) from None
            except Exception as exc:
                raise CheckpointError(
                    f"{self.directory / name}: unreadable checkpoint shard ({brief(exc)})"
                ) from None
        done: Future[None] = Future()
        done.set_result(None)
        return done


class _SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's planner, with non-tensor values read as plain data of the type they replace."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        loaded = torch.load(value, weights_only=True)
        current = self.state_dict.get(fqn)
        if not (type(loaded) is type(current) or loaded is None or current is None):
            raise CheckpointError(
                f"{fqn} holds a {type(loaded).__name__}, expected a {type(current).__name__}"
            )
        # DefaultLoadPlanner stores the value (through its flattening maps) with an unrestricted
        # torch.load; it is given the checked value, serialised again here.
        checked = io.BytesIO()
        torch.save(loaded, checked)
        checked.seek(0)
        super().load_bytes(read_item, checked)


def brief(exc: BaseException) -> str:
    """The first sentence of an error (torch's zip errors go on for a paragraph)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.split(". ")[0]


def first_failure(exc: CheckpointException) -> BaseException:
    """The underlying error of a CheckpointException (DCP stores (exception, traceback) per rank)."""
    for failure in exc.failures.values():
        return failure[0] if isinstance(failure, tuple) else failure
    return exc


def load(state: dict[str, Any], directory: Path) -> None:
    """``dcp.load`` of ``state`` from ``directory`` through the checks above; CheckpointError on failure."""
    reader = _SafeReader(directory)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to")
            dcp.load(state, storage_reader=reader, planner=_SafeLoadPlanner())
    except CheckpointException as exc:  # a BaseException: `except Exception` would let it through
        failure = first_failure(exc)
        if isinstance(failure, HerdError):
            raise CheckpointError(str(failure)) from None
        raise CheckpointError(f"{directory}: cannot read checkpoint tensors ({brief(failure)})") from None
