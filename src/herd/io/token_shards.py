"""``herd-tokens-v1``: packed token shards, the contract between ``herd data`` (the writer) and ``herd train``.

On disk, one directory per dataset::

    manifest.json
    <prefix>-NNNNN.bin        flat token ids, little-endian, of the manifest's "dtype"
    <prefix>-NNNNN.idx.npy    int64 document start offsets into the .bin (numpy's .npy format):
                              one per document plus one, ascending, the first 0, the last = tokens

``herd data build`` names them ``tokens/<source>/<split>-NNNNN`` (:class:`ShardWriter`);
the names are free, since the manifest lists every file, but each must be a
relative path inside the directory (``herd.paths.contained`` refuses any other).

**Document boundaries.** Document ``d`` of a shard is ``tokens[idx[d]:idx[d+1]]``.
``herd data`` ends every document with the tokenizer's end-of-text id (when it
has one) and never splits a document across shards. Training windows span
several documents; the document ids read from the index keep attention inside
each (Llama 3 §3.2).

**dtype.** ``uint16`` when every id of the vocabulary fits (at most 2**16 ids),
else ``uint32`` (:func:`token_dtype`).

**manifest.json**, a JSON object; the keys the format defines (others, such as a
data build's ``recipe``, ``sources`` and ``steps``, are the writer's and ignored here):

``format``
    ``"herd-tokens-v1"`` (required).
``dtype``
    ``"uint16"`` or ``"uint32"`` (required).
``vocab_size``
    integer >= 0: the vocabulary of the tokenizer that made the ids (0: unknown).
    A pretraining run whose config leaves ``model.vocab_size`` unset takes it from here.
``tokenizer``
    optional: a relative directory inside the dataset holding the files of the
    tokenizer that made the ids, as :func:`herd.tokenizer.save.save_tokenizer`
    writes them (``herd data build --tokenizer`` writes ``tokenizer/``). The
    trainer copies them next to the weights it exports, so the exported model
    directory loads with its tokenizer (:attr:`TokenDataset.tokenizer_dir`).
``splits``
    ``{split: {source: {"weight": w, "shards": [shard, ...]}}}``; ``train`` is
    required, ``val`` (held-out documents, read once) optional. A data build
    without a tokenizer writes a manifest without ``splits`` (documents only),
    which :meth:`TokenDataset.open` refuses with how to make the shards.
``weight``
    finite number >= 0, the source's share of the training mixture (Llama 1
    §2.1's table; normalised over the sources; default 1).
``shards``
    a list of tables, one per ``.bin``/``.idx.npy`` pair:

    ``tokens``, ``index``
        the two files (required).
    ``num_tokens``
        integer >= 0 (required): the ``.bin`` holds exactly this many ids.
    ``num_documents``
        integer >= 0 (required): the index holds this many offsets plus one.
    ``num_bytes``
        integer >= 0: UTF-8 size of the text the shard was tokenized from, for
        bits per byte (default 0: unknown).
    ``max_token_id``
        integer >= 0: the largest id in the shard (0 when it holds none). It lets
        a reader check the ids against a model's vocabulary without reading every
        token; a shard without it is read in full for that check.

Example::

    {"format": "herd-tokens-v1", "dtype": "uint16", "vocab_size": 32000, "tokenizer": "tokenizer",
     "splits": {"train": {"web": {"weight": 0.67, "shards": [
                  {"tokens": "web/train-00000.bin", "index": "web/train-00000.idx.npy",
                   "num_tokens": 1048576, "num_documents": 812, "num_bytes": 4210033,
                   "max_token_id": 31999}]}},
                "val": {...same shape...}}}

Every file is written atomically (:mod:`herd.io.atomic`), the manifest last, so
a manifest never lists a shard that is not whole. :meth:`TokenDataset.open`
validates the manifest key by key and each shard against its files, and
fingerprints the dataset (:func:`dataset_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from herd.errors import HerdError, InputError
from herd.io.atomic import write_atomically
from herd.paths import contained

FORMAT = "herd-tokens-v1"
MANIFEST = "manifest.json"
DTYPES: dict[str, type[np.unsignedinteger]] = {"uint16": np.uint16, "uint32": np.uint32}
SHARD_SUFFIXES = (".bin", ".idx.npy")


class DataError(InputError):
    """A token dataset is missing, corrupt or disagrees with its manifest."""


def token_dtype(vocab_size: int) -> str:
    """``uint16`` when every id fits, else ``uint32``."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


# ---- writing -------------------------------------------------------------------------------------


class ShardWriter:
    """Appends documents' token ids to numbered shards ``<prefix>-NNNNN`` under ``root``, each written atomically.

    A shard is closed once it holds ``tokens_per_shard`` tokens or more (a
    document is never split); :attr:`entries` are the manifest's shard tables
    of those written so far.
    """

    def __init__(self, root: Path, prefix: str, dtype: str, tokens_per_shard: int) -> None:
        self.root, self.prefix, self.dtype = root, prefix, np.dtype(dtype)
        self.tokens_per_shard = tokens_per_shard
        self.entries: list[dict[str, Any]] = []
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = [0]
        self._bytes = 0

    def add(self, ids: Sequence[int], num_bytes: int) -> None:
        """Append one document: its token ids and the UTF-8 size of its text."""
        self._chunks.append(np.asarray(ids, dtype=self.dtype))
        self._starts.append(self._starts[-1] + len(ids))
        self._bytes += num_bytes
        if self._starts[-1] >= self.tokens_per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the documents added since the last shard as a shard (none: nothing)."""
        if len(self._starts) == 1:
            return
        tokens_path, index_path = self._files(len(self.entries))
        tokens = np.concatenate(self._chunks)
        write_atomically(tokens_path, tokens.tofile)
        write_atomically(index_path, lambda f: np.save(f, np.asarray(self._starts, dtype=np.int64)))
        self.entries.append(
            {
                "tokens": tokens_path.relative_to(self.root).as_posix(),
                "index": index_path.relative_to(self.root).as_posix(),
                "num_tokens": len(tokens),
                "num_documents": len(self._starts) - 1,
                "num_bytes": self._bytes,
                "max_token_id": int(tokens.max()) if len(tokens) else 0,
            }
        )
        self._chunks, self._starts, self._bytes = [], [0], 0

    def _files(self, number: int) -> tuple[Path, Path]:
        """The token and index files of shard ``number``."""
        stem = f"{self.prefix}-{number:05d}"
        tokens, index = (self.root / f"{stem}{suffix}" for suffix in SHARD_SUFFIXES)
        return tokens, index

    def remove_later_shards(self) -> None:
        """Delete shards numbered after the last one written: an interrupted build's, which no manifest lists."""
        number = len(self.entries)
        while True:
            files = self._files(number)
            if not any(p.exists() for p in files):
                return
            for path in files:
                path.unlink(missing_ok=True)
            number += 1


def write_manifest(root: Path | str, manifest: Mapping[str, Any]) -> Path:
    """Write ``root/manifest.json`` atomically (indented JSON); written after the shards it lists."""
    path = Path(root) / MANIFEST
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(path, lambda f: f.write(text.encode()))
    return path


def write_dataset(
    path: Path | str,
    splits: Mapping[str, Mapping[str, Sequence[Sequence[int]]]],
    *,
    vocab_size: int,
    weights: Mapping[str, float] | None = None,
    num_bytes: Mapping[str, Mapping[str, int]] | None = None,
    dtype: str = "uint16",
) -> Path:
    """Write ``{split: {source: [document token lists]}}`` as a dataset of one shard per split and source.

    Used by tests and the demo; ``herd data build`` writes the same format at
    scale, tokenizing as it goes. ``num_bytes`` gives each split and source's
    text size (for bits per byte), ``weights`` each source's mixture weight.
    """
    path = Path(path)
    manifest: dict[str, Any] = {"format": FORMAT, "dtype": dtype, "vocab_size": vocab_size, "splits": {}}
    for split, sources in splits.items():
        entries = manifest["splits"][split] = {}
        for name, docs in sources.items():
            writer = ShardWriter(path, f"{name}/{split}", dtype, tokens_per_shard=sys.maxsize)
            size = (num_bytes or {}).get(split, {}).get(name, 0)
            # the text size is known per source, not per document: it is counted with the first one
            for i, doc in enumerate(docs):
                writer.add(doc, size if i == 0 else 0)
            writer.flush()
            entries[name] = {"weight": (weights or {}).get(name, 1.0), "shards": writer.entries}
    write_manifest(path, manifest)
    return path


# ---- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One ``.bin``/``.idx.npy`` pair, opened read-only by memory map."""

    tokens: np.ndarray
    starts: np.ndarray
    num_bytes: int
    files: tuple[Path, ...] = ()  # the .bin and .idx.npy, for the dataset's fingerprint
    recorded_max: int | None = None  # the manifest's max_token_id, when it has one

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def max_token_id(self) -> int:
        """The largest id in the shard (0 when it holds none): the manifest's, else read from the tokens."""
        if self.recorded_max is not None:
            return self.recorded_max
        return int(self.tokens.max()) if self.num_tokens else 0


@dataclass(frozen=True)
class Source:
    """A named source of one split: its mixture weight and its shards."""

    name: str
    weight: float
    shards: tuple[Shard, ...]

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.shards)

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.shards)

    def windows(self, seq_len: int) -> np.ndarray:
        """(shard, offset) rows of every complete ``seq_len + 1``-token window at stride ``seq_len``, in file order.

        A window never crosses from one shard into the next.
        """
        rows = [
            np.stack([np.full(n, i), np.arange(n) * seq_len], axis=1)
            for i, s in enumerate(self.shards)
            if (n := max(0, (s.num_tokens - 1) // seq_len))
        ]
        return np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(entry: dict[str, Any], key: str, where: str, *, required: bool = True) -> int:
    """``entry[key]`` as a count (an integer ≥ 0); a named DataError otherwise."""
    if key not in entry and not required:
        return 0
    value = entry.get(key)
    if not _is_int(value) or value < 0:
        raise DataError(f"{where}: {key!r} must be an integer >= 0, got {value!r}")
    return value


def _table(value: Any, where: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected {expected}, got {value!r}")
    return value


def _shard_path(root: Path, entry: dict[str, Any], key: str, where: str) -> Path:
    """The file ``entry[key]`` names, which must stay inside the dataset directory."""
    name = entry.get(key)
    if not isinstance(name, str):
        raise DataError(f"{where}: {key!r} must be a file name inside the dataset, got {name!r}")
    try:
        return contained(root, name, f"{where} {key!r}")
    except HerdError as exc:
        raise DataError(str(exc)) from None


def _open_shard(
    root: Path, entry: Any, dtype: type[np.unsignedinteger], where: str, vocab_size: int | None
) -> Shard:
    """Open one shard entry of the manifest, checking it against its files (and the model's vocabulary)."""
    entry_name = f"{root / MANIFEST}: {where}"
    if not isinstance(entry, dict):
        raise DataError(f"{entry_name}: expected a table with tokens, index, num_tokens, num_documents")
    tokens_path = _shard_path(root, entry, "tokens", entry_name)
    index_path = _shard_path(root, entry, "index", entry_name)
    num_tokens = _count(entry, "num_tokens", entry_name)
    num_docs = _count(entry, "num_documents", entry_name)
    num_bytes = _count(entry, "num_bytes", entry_name, required=False)
    recorded_max = _count(entry, "max_token_id", entry_name) if "max_token_id" in entry else None
    for path in (tokens_path, index_path):
        if not path.is_file():
            raise DataError(f"{path}: shard file missing ({where})")
    expected = num_tokens * np.dtype(dtype).itemsize
    if tokens_path.stat().st_size != expected:
        raise DataError(
            f"{tokens_path}: corrupt shard: {tokens_path.stat().st_size} bytes, manifest says "
            f"{num_tokens} tokens = {expected} bytes"
        )
    tokens = np.memmap(tokens_path, dtype=dtype, mode="r") if num_tokens else np.zeros(0, dtype)
    starts = _read_index(index_path, num_docs, num_tokens)
    shard = Shard(tokens, starts, num_bytes, (tokens_path, index_path), recorded_max)
    if vocab_size is not None and num_tokens and (largest := shard.max_token_id()) >= vocab_size:
        raise DataError(
            f"{tokens_path}: token id {largest} is outside the model's vocabulary "
            f"(vocab_size {vocab_size}, ids 0..{vocab_size - 1})"
        )
    return shard


def _read_index(path: Path, num_docs: int, num_tokens: int) -> np.ndarray:
    """A shard's document start offsets, checked: ``num_docs + 1`` ascending integers from 0 to ``num_tokens``."""
    try:
        starts = np.load(path)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt document index ({exc})") from None
    if not isinstance(starts, np.ndarray):  # an .npz archive under the index's name
        raise DataError(f"{path}: corrupt document index (not a .npy array)")
    if starts.dtype.kind in "iu":
        starts = starts.astype(np.int64)
    if (
        starts.dtype != np.int64
        or starts.ndim != 1
        or len(starts) != num_docs + 1
        or (len(starts) and (starts[0] != 0 or starts[-1] != num_tokens))
        or np.any(np.diff(starts) < 0)
    ):
        raise DataError(
            f"{path}: corrupt document index: expected {num_docs + 1} ascending integer offsets "
            f"from 0 to {num_tokens}"
        )
    return starts


def _open_split(
    root: Path, split: str, sources: Any, dtype: type[np.unsignedinteger], vocab_size: int | None
) -> tuple[Source, ...]:
    """The sources of one split of the manifest, each checked for a weight and a list of shards."""
    opened = []
    for name, spec in _table(sources, f"{root / MANIFEST}: splits.{split}", "a table").items():
        where = f"{root / MANIFEST}: splits.{split}.{name}"
        spec = _table(spec, where, "a table with weight and shards")
        weight = spec.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight < math.inf:
            raise DataError(f"{where}: weight must be a finite number >= 0, got {weight!r}")
        shards = spec.get("shards", [])
        if not isinstance(shards, list):
            raise DataError(f"{where}: shards must be a list, got {shards!r}")
        opened.append(
            Source(
                name,
                float(weight),
                tuple(
                    _open_shard(root, e, dtype, f"{split}/{name} shard {i}", vocab_size)
                    for i, e in enumerate(shards)
                ),
            )
        )
    return tuple(opened)


def dataset_fingerprint(root: Path, manifest_bytes: bytes, splits: Mapping[str, tuple[Source, ...]]) -> str:
    """SHA-256 of the manifest's bytes and each shard file's name (relative to ``root``) and size.

    Cheap (no token is read) and enough to notice a dataset rebuilt under the
    same path: a different tokenizer, mixture or filter changes the manifest or
    the shard sizes, and with them the windows a resumed run would draw. A copy
    of the dataset elsewhere has the same fingerprint.
    """
    digest = hashlib.sha256(manifest_bytes)
    for split in sorted(splits):
        for source in splits[split]:
            for path in (f for shard in source.shards for f in shard.files):
                digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _tokenizer_dir(root: Path, manifest: dict[str, Any], manifest_path: Path) -> Path | None:
    """The directory the manifest's ``tokenizer`` names, which must be one inside ``root`` (None without the key)."""
    if "tokenizer" not in manifest:
        return None
    name = manifest["tokenizer"]
    if not isinstance(name, str):
        raise DataError(
            f"{manifest_path}: tokenizer must be a directory name inside the dataset, got {name!r}"
        )
    try:
        path = contained(root, name, f"{manifest_path} 'tokenizer'")
    except HerdError as exc:
        raise DataError(str(exc)) from None
    if not path.is_dir():
        raise DataError(f"{manifest_path}: tokenizer {name!r} names no directory ({path} is missing)")
    return path


@dataclass(frozen=True)
class TokenDataset:
    """A dataset directory: its manifest's vocabulary size and tokenizer, the sources of each split, a fingerprint."""

    path: Path
    vocab_size: int
    splits: dict[str, tuple[Source, ...]]
    fingerprint: str = ""
    # the manifest's "tokenizer": the files of the tokenizer that made the ids
    tokenizer_dir: Path | None = None

    def max_token_id(self) -> int:
        """The largest token id in any split: the manifest's ``max_token_id``s, else read from the shards."""
        shards = [shard for sources in self.splits.values() for source in sources for shard in source.shards]
        return max((shard.max_token_id() for shard in shards), default=0)

    @classmethod
    def open(cls, path: Path | str, model_vocab_size: int | None = None) -> TokenDataset:
        """Open and validate ``path/manifest.json`` and every shard it names.

        With ``model_vocab_size``, every token id of every shard must be below
        it (an id outside the embedding table is an index error on a CPU and a
        device-side assert on a GPU, long after start-up); a shard's recorded
        ``max_token_id`` answers that without reading its tokens.
        """
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{manifest_path}: no token dataset here (run `herd data build` first)")
        raw = manifest_path.read_bytes()
        try:
            manifest = _table(json.loads(raw), str(manifest_path), "a JSON object")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise DataError(f"{manifest_path}: corrupt manifest ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise DataError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
        if "splits" not in manifest:
            raise DataError(
                f"{path}: holds no token shards (documents only); make them with "
                f"`herd data build RECIPE -o {path} --tokenizer PATH`"
            )
        if manifest.get("dtype") not in DTYPES:
            raise DataError(f"{manifest_path}: dtype {manifest.get('dtype')!r}, expected uint16 or uint32")
        vocab_size = manifest.get("vocab_size", 0)
        if not _is_int(vocab_size) or vocab_size < 0:
            raise DataError(f"{manifest_path}: vocab_size must be an integer >= 0, got {vocab_size!r}")
        dtype = DTYPES[manifest["dtype"]]
        splits = {
            split: _open_split(path, split, sources, dtype, model_vocab_size)
            for split, sources in _table(manifest["splits"], f"{manifest_path}: splits", "a table").items()
        }
        if not splits.get("train"):
            raise DataError(f"{manifest_path}: no train split")
        tokenizer_dir = _tokenizer_dir(path, manifest, manifest_path)
        return cls(path, vocab_size, splits, dataset_fingerprint(path, raw, splits), tokenizer_dir)
