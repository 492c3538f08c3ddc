"""Packed token shards and a deterministic, resumable mixture sampler (Llama 1 §2.1, Llama 3 §3.4.1).

On-disk format (``herd-tokens-v1``), one directory per dataset::

    manifest.json
    <source>/<name>.bin        flat token ids, little-endian uint16 or uint32 (manifest "dtype")
    <source>/<name>.idx.npy    int64 document start offsets into the .bin, length documents + 1,
                               first 0, last = tokens (so document d is tokens[idx[d]:idx[d+1]])

``manifest.json``::

    {"format": "herd-tokens-v1", "dtype": "uint16", "vocab_size": 32000,
     "splits": {"train": {"web": {"weight": 0.67, "shards": [
                  {"tokens": "web/00000.bin", "index": "web/00000.idx.npy",
                   "num_tokens": 1048576, "num_documents": 812, "num_bytes": 4210033}]}},
                "val": {...same shape, optional...}}}

``weight`` is the source's share of the training mixture (Llama 1 §2.1's table;
normalised over the sources; a config may override it); ``num_bytes`` is the
UTF-8 size of the text the shard was tokenized from, used for bits per byte.

Training samples are windows of ``seq_len + 1`` tokens taken at stride
``seq_len`` inside one shard (input = window[:-1], target = window[1:]); a
window spans several documents, and the document ids passed to the model keep
attention inside each (Llama 3 §3.4.1). The sampler is a pure function of a
tiny state (samples drawn per source), so the data order is deterministic,
independent of the world size, and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from herd.errors import HerdError
from herd.paths import contained

FORMAT = "herd-tokens-v1"
MANIFEST = "manifest.json"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class DataError(HerdError):
    """A token dataset is missing, corrupt or disagrees with its manifest."""


@dataclass(frozen=True)
class Shard:
    """One ``.bin``/``.idx.npy`` pair, opened read-only by memory map."""

    tokens: np.ndarray
    starts: np.ndarray
    num_bytes: int
    files: tuple[Path, ...] = ()  # the .bin and .idx.npy, for the dataset's fingerprint

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Source:
    """A named source of one split: its shards and how many training windows each holds."""

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
        """(shard, offset) rows of every complete ``seq_len + 1`` window, in file order."""
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
    if vocab_size is not None and num_tokens and (largest := int(tokens.max())) >= vocab_size:
        raise DataError(
            f"{tokens_path}: token id {largest} is outside the model's vocabulary "
            f"(vocab_size {vocab_size}, ids 0..{vocab_size - 1})"
        )
    try:
        starts = np.load(index_path)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{index_path}: corrupt document index ({exc})") from None
    if not isinstance(starts, np.ndarray):  # an .npz archive under the index's name
        raise DataError(f"{index_path}: corrupt document index (not a .npy array)")
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
            f"{index_path}: corrupt document index: expected {num_docs + 1} ascending integer offsets "
            f"from 0 to {num_tokens}"
        )
    return Shard(tokens, starts, num_bytes, (tokens_path, index_path))


def _fingerprint(root: Path, manifest_bytes: bytes, sources: dict[str, tuple[Source, ...]]) -> str:
    """SHA-256 of the manifest's bytes and each shard file's name and size.

    Cheap (no token is read) and enough to notice a dataset rebuilt under the
    same path: a different tokenizer, mixture or filter changes the manifest or
    the shard sizes, and with them the windows a resumed run would draw.
    """
    digest = hashlib.sha256(manifest_bytes)
    for split in sorted(sources):
        for source in sources[split]:
            for path in (f for shard in source.shards for f in shard.files):
                digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _table(value: Any, where: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected {expected}, got {value!r}")
    return value


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


@dataclass(frozen=True)
class TokenDataset:
    """A dataset directory: its manifest's vocabulary size, the sources of each split and a fingerprint."""

    path: Path
    vocab_size: int
    splits: dict[str, tuple[Source, ...]]
    fingerprint: str = ""

    @classmethod
    def open(cls, path: Path | str, model_vocab_size: int | None = None) -> TokenDataset:
        """Open and validate ``path/manifest.json`` and every shard it names.

        With ``model_vocab_size``, every token id of every shard must be below
        it (an id outside the embedding table is an index error on a CPU and a
        device-side assert on a GPU, long after start-up).
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
        if manifest.get("dtype") not in DTYPES:
            raise DataError(f"{manifest_path}: dtype {manifest.get('dtype')!r}, expected uint16 or uint32")
        vocab_size = manifest.get("vocab_size", 0)
        if not _is_int(vocab_size) or vocab_size < 0:
            raise DataError(f"{manifest_path}: vocab_size must be an integer >= 0, got {vocab_size!r}")
        dtype = DTYPES[manifest["dtype"]]
        splits = {
            split: _open_split(path, split, sources, dtype, model_vocab_size)
            for split, sources in _table(
                manifest.get("splits", {}), f"{manifest_path}: splits", "a table"
            ).items()
        }
        if not splits.get("train"):
            raise DataError(f"{manifest_path}: no train split")
        return cls(path, vocab_size, splits, _fingerprint(path, raw, splits))


def write_dataset(
    path: Path | str,
    splits: dict[str, dict[str, list[list[int]]]],
    *,
    vocab_size: int,
    weights: dict[str, float] | None = None,
    num_bytes: dict[str, dict[str, int]] | None = None,
    dtype: str = "uint16",
) -> Path:
    """Write ``{split: {source: [document token lists]}}`` as a one-shard-per-source dataset.

    Used by tests and the demo; ``herd data build`` writes the same format at scale.
    """
    path = Path(path)
    manifest: dict[str, Any] = {"format": FORMAT, "dtype": dtype, "vocab_size": vocab_size, "splits": {}}
    for split, sources in splits.items():
        entries = manifest["splits"][split] = {}
        for name, docs in sources.items():
            (path / name).mkdir(parents=True, exist_ok=True)
            stem = f"{name}/{split}-00000"
            flat = np.fromiter((t for d in docs for t in d), dtype=DTYPES[dtype])
            flat.tofile(path / f"{stem}.bin")
            np.save(path / f"{stem}.idx.npy", np.cumsum([0, *map(len, docs)], dtype=np.int64))
            entries[name] = {
                "weight": (weights or {}).get(name, 1.0),
                "shards": [
                    {
                        "tokens": f"{stem}.bin",
                        "index": f"{stem}.idx.npy",
                        "num_tokens": len(flat),
                        "num_documents": len(docs),
                        "num_bytes": (num_bytes or {}).get(split, {}).get(name, 0),
                    }
                ],
            }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return path


@dataclass
class Batch:
    """Inputs, next-token targets and document ids, each (batch, seq_len) int64."""

    inputs: torch.Tensor
    targets: torch.Tensor
    document_ids: torch.Tensor


def read_windows(sources: tuple[Source, ...], picks: list[tuple[int, int, int]], seq_len: int) -> Batch:
    """Gather ``(source, shard, offset)`` windows into a :class:`Batch`."""
    tokens = np.empty((len(picks), seq_len + 1), dtype=np.int64)
    doc_ids = np.empty((len(picks), seq_len), dtype=np.int64)
    for row, (src, shard_i, offset) in enumerate(picks):
        shard = sources[src].shards[shard_i]
        tokens[row] = shard.tokens[offset : offset + seq_len + 1]
        doc_ids[row] = np.searchsorted(shard.starts, np.arange(offset, offset + seq_len), side="right")
    t = torch.from_numpy(tokens)
    return Batch(t[:, :-1], t[:, 1:], torch.from_numpy(doc_ids))


def usable_sources(sources: tuple[Source, ...], seq_len: int) -> tuple[Source, ...]:
    """The sources that hold at least one training window; the others are dropped with a warning.

    A source smaller than one sequence (a tiny sample, a filter that kept
    almost nothing) cannot be drawn from; the mixture renormalises over the rest.
    """
    kept = tuple(s for s in sources if len(s.windows(seq_len)))
    for source in sources:
        if source not in kept:
            warnings.warn(
                f"source {source.name!r} has fewer than {seq_len + 1} tokens in any shard; "
                "it is left out of the mixture",
                stacklevel=2,
            )
    if not kept:
        raise DataError(f"no source has a shard of at least {seq_len + 1} tokens (seq_len {seq_len})")
    return kept


class MixtureSampler:
    """The global sequence of training windows: a weighted mixture of per-source shuffled epochs.

    Sample ``k`` comes from the source furthest behind its share
    (``argmax_s w_s·(k+1) − taken_s``), so every prefix of the stream matches
    the mixture weights as closely as integers allow, with no randomness. Each
    source walks its windows in a fresh permutation per epoch seeded by
    ``(seed, source, epoch)``; sources smaller than their share repeat (Llama 1
    §2.1 trains Wikipedia and Books for ~2.4 epochs). The whole state is the
    count taken from each source.
    """

    def __init__(self, sources: tuple[Source, ...], seq_len: int, weights: list[float], seed: int) -> None:
        self.sources = sources
        self.seq_len = seq_len
        self.windows = [s.windows(seq_len) for s in sources]
        for source, w in zip(sources, self.windows, strict=True):
            if not len(w):
                raise DataError(f"source {source.name!r} has fewer than {seq_len + 1} tokens in any shard")
        total = sum(weights)
        self.weights = np.asarray(weights, dtype=np.float64) / total
        self.seed = seed
        self.taken = [0] * len(sources)
        self._perm: dict[tuple[int, int], np.ndarray] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"taken": list(self.taken)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["taken"]) != len(self.sources):
            raise DataError(f"data state has {len(state['taken'])} sources, the dataset {len(self.sources)}")
        self.taken = [int(x) for x in state["taken"]]

    def _permutation(self, src: int, epoch: int) -> np.ndarray:
        key = (src, epoch)
        if key not in self._perm:
            self._perm = {k: v for k, v in self._perm.items() if k[0] != src}
            rng = np.random.default_rng([self.seed, src, epoch])
            self._perm[key] = rng.permutation(len(self.windows[src]))
        return self._perm[key]

    def draw(self, n: int) -> list[tuple[int, int, int]]:
        """The next ``n`` windows of the global stream as ``(source, shard, offset)``."""
        picks = []
        for _ in range(n):
            k = sum(self.taken)
            src = int(np.argmax(self.weights * (k + 1) - np.asarray(self.taken)))
            count = len(self.windows[src])
            epoch, i = divmod(self.taken[src], count)
            shard, offset = self.windows[src][self._permutation(src, epoch)[i]]
            picks.append((src, int(shard), int(offset)))
            self.taken[src] += 1
        return picks


def validation_windows(sources: tuple[Source, ...], seq_len: int, n: int) -> list[tuple[int, int, int]]:
    """The first ``n`` windows of a held-out split, taken round-robin over its sources (fixed)."""
    per_source = [s.windows(seq_len) for s in sources]
    picks: list[tuple[int, int, int]] = []
    for i in range(max((len(w) for w in per_source), default=0)):
        for src, w in enumerate(per_source):
            if i < len(w) and len(picks) < n:
                picks.append((src, int(w[i][0]), int(w[i][1])))
    return picks


def bytes_per_token(sources: tuple[Source, ...]) -> float:
    """UTF-8 bytes per token of a split (NaN when the manifest has no byte counts)."""
    tokens, nbytes = sum(s.num_tokens for s in sources), sum(s.num_bytes for s in sources)
    return nbytes / tokens if tokens and nbytes else math.nan
