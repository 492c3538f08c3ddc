"""Bad checkpoint files: one line naming the file and what is wrong, exit 2, from every entry point.

Each case takes a valid tiny checkpoint and breaks one thing in one file (a
value of the wrong type, an index of the wrong shape, a shard name that
leaves the directory, a GGUF tensor whose size overflows, a missing shard).
The same file is then given to ``herd convert``, ``herd model info`` and
``herd.load_model``: all three must report it as a :class:`HerdError` whose
message names the file and the key or tensor, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import pytest
from gguf import GGUFValueType as T

import herd
from herd.checkpoint.hf import INDEX_NAME
from herd.errors import HerdError

CliRun = Callable[[list[str]], tuple[int, str]]
Sources = dict[str, Path]
DELETE = object()  # a key to remove rather than set


def _edit_json(file: Path, changes: dict[str, Any]) -> None:
    data = json.loads(file.read_text())
    for key, value in changes.items():
        if value is DELETE:
            del data[key]
        else:
            data[key] = value
    file.write_text(json.dumps(data))


def hf_config(**changes: Any) -> Callable[[Sources, Path], Path]:
    def make(sources: Sources, tmp: Path) -> Path:
        dst = shutil.copytree(sources["hf"], tmp / "model")
        _edit_json(dst / "config.json", changes)
        return dst

    return make


def hf_file(name: str, content: bytes, source: str = "hf") -> Callable[[Sources, Path], Path]:
    def make(sources: Sources, tmp: Path) -> Path:
        dst = shutil.copytree(sources[source], tmp / "model")
        (dst / name).write_bytes(content)
        return dst

    return make


def hf_index(edit: Callable[[dict[str, Any], Path], Any]) -> Callable[[Sources, Path], Path]:
    """The sharded directory with its index replaced by ``edit(index, tmp)``."""

    def make(sources: Sources, tmp: Path) -> Path:
        dst = shutil.copytree(sources["hf-sharded"], tmp / "model")
        index = json.loads((dst / INDEX_NAME).read_text())
        (dst / INDEX_NAME).write_text(json.dumps(edit(index, tmp)))
        return dst

    return make


def _first_shard_to(name: Callable[[Path], str]) -> Callable[[dict[str, Any], Path], Any]:
    """Point the first tensor of the index at ``name(tmp)``, where a valid copy of its shard is put."""

    def edit(index: dict[str, Any], tmp: Path) -> dict[str, Any]:
        key, shard = next(iter(index["weight_map"].items()))
        (tmp / "elsewhere").mkdir()
        shutil.copy(tmp / "model" / shard, tmp / "elsewhere" / shard)  # readable, so only the path is wrong
        index["weight_map"][key] = name(tmp / "elsewhere" / shard)
        return index

    return edit


def meta_params(**changes: Any) -> Callable[[Sources, Path], Path]:
    def make(sources: Sources, tmp: Path) -> Path:
        dst = shutil.copytree(sources["meta"], tmp / "model")
        _edit_json(dst / "params.json", changes)
        return dst

    return make


def meta_without(shard: str) -> Callable[[Sources, Path], Path]:
    def make(sources: Sources, tmp: Path) -> Path:
        dst = shutil.copytree(sources["meta"], tmp / "model")
        (dst / shard).unlink()
        return dst

    return make


GGUF_BASE: dict[str, tuple[Any, T]] = {
    "llama.embedding_length": (64, T.UINT32),
    "llama.block_count": (2, T.UINT32),
    "llama.attention.head_count": (4, T.UINT32),
    "llama.attention.head_count_kv": (2, T.UINT32),
    "llama.feed_forward_length": (256, T.UINT32),
    "llama.vocab_size": (512, T.UINT32),
    "llama.context_length": (256, T.UINT32),
}


def gguf_metadata(**changes: tuple[Any, T] | object) -> Callable[[Sources, Path], Path]:
    """A GGUF of llama metadata only (enough for ``model info``) with some values changed (``__`` for ``.``)."""

    def make(sources: Sources, tmp: Path) -> Path:
        path = tmp / "model.gguf"
        writer = gguf.GGUFWriter(path, "llama")
        values = GGUF_BASE | {key.replace("__", "."): value for key, value in changes.items()}
        for key, value in values.items():
            if value is not DELETE:
                data, vtype = value
                sub = T.UINT32 if vtype == T.ARRAY else None
                writer.add_key_value(key, data, vtype, sub)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        return path

    return make


def gguf_dims(tensor: str, dims: tuple[int, ...]) -> Callable[[Sources, Path], Path]:
    """The tiny GGUF with the directory entry of ``tensor`` given other dimensions (fastest first)."""

    def make(sources: Sources, tmp: Path) -> Path:
        data = bytearray(sources["gguf"].read_bytes())
        at = data.index(tensor.encode()) + len(tensor)
        (n_dims,) = struct.unpack_from("<I", data, at)
        assert n_dims == len(dims)
        data[at + 4 : at + 4 + 8 * n_dims] = struct.pack(f"<{n_dims}Q", *dims)
        path = tmp / "model.gguf"
        path.write_bytes(bytes(data))
        return path

    return make


# name: (make the bad checkpoint, the file it must name, the key/tensor/problem it must name)
CASES: dict[str, tuple[Callable[[Sources, Path], Path], str, str]] = {
    # config.json values of the wrong type
    "hf-dim-string": (hf_config(hidden_size="64"), "config.json", "hidden_size"),
    "hf-layers-negative": (hf_config(num_hidden_layers=-2), "config.json", "num_hidden_layers"),
    "hf-vocab-float": (hf_config(vocab_size=512.0), "config.json", "vocab_size"),
    "hf-hidden-list": (hf_config(intermediate_size=[256]), "config.json", "intermediate_size"),
    "hf-eps-string": (hf_config(rms_norm_eps="1e-5"), "config.json", "rms_norm_eps"),
    "hf-tie-string": (hf_config(tie_word_embeddings="no"), "config.json", "tie_word_embeddings"),
    "hf-heads-missing": (hf_config(num_attention_heads=DELETE), "config.json", "num_attention_heads"),
    "hf-kv-heads-not-dividing": (hf_config(num_key_value_heads=3), "config.json", "n_kv_heads"),
    "hf-rope-scaling-string": (hf_config(rope_scaling="linear"), "config.json", "rope_scaling"),
    "hf-rope-factor-string": (
        hf_config(rope_scaling={"rope_type": "linear", "factor": "2"}),
        "config.json",
        "rope_scaling.factor",
    ),
    "hf-config-list": (hf_file("config.json", b"[1, 2]"), "config.json", "JSON object"),
    "hf-config-not-utf8": (hf_file("config.json", b'{"hidden_size": "\xff"}'), "config.json", "UTF-8"),
    # the safetensors index
    "index-map-list": (
        hf_index(lambda i, _: {"weight_map": list(i["weight_map"])}),
        INDEX_NAME,
        "weight_map",
    ),
    "index-map-missing": (hf_index(lambda i, _: {"metadata": i["metadata"]}), INDEX_NAME, "weight_map"),
    "index-value-number": (
        hf_index(lambda i, _: {"weight_map": dict.fromkeys(i["weight_map"], 5)}),
        INDEX_NAME,
        "weight_map",
    ),
    "index-list": (hf_index(lambda i, _: [i]), INDEX_NAME, "JSON object"),
    "index-parent-path": (
        hf_index(_first_shard_to(lambda p: f"../elsewhere/{p.name}")),
        INDEX_NAME,
        "leaves",
    ),
    "index-absolute-path": (hf_index(_first_shard_to(str)), INDEX_NAME, "absolute"),
    # safetensors headers
    "safetensors-garbage-header": (
        hf_file("model.safetensors", struct.pack("<Q", 24) + b'{"a": not json at all!!}'),
        "model.safetensors",
        "safetensors",
    ),
    "safetensors-header-past-end": (
        hf_file("model.safetensors", struct.pack("<Q", 10**12) + b"{}"),
        "model.safetensors",
        "safetensors",
    ),
    # params.json values of the wrong type, and a missing shard
    "meta-dim-string": (meta_params(dim="64"), "params.json", "dim"),
    "meta-layers-negative": (meta_params(n_layers=-1), "params.json", "n_layers"),
    "meta-vocab-float": (meta_params(vocab_size=512.5), "params.json", "vocab_size"),
    "meta-heads-list": (meta_params(n_heads=[4]), "params.json", "n_heads"),
    "meta-eps-string": (meta_params(norm_eps="small"), "params.json", "norm_eps"),
    "meta-scaled-rope-string": (meta_params(use_scaled_rope="yes"), "params.json", "use_scaled_rope"),
    "meta-rope-factor-string": (
        meta_params(rope_scaling={"factor": "8"}),
        "params.json",
        "rope_scaling.factor",
    ),
    "meta-rope-unknown-key": (meta_params(rope_scaling={"factr": 8.0}), "params.json", "rope_scaling.factr"),
    "meta-last-shard-missing": (meta_without("consolidated.01.pth"), "consolidated.01.pth", "shard missing"),
    "meta-first-shard-missing": (meta_without("consolidated.00.pth"), "consolidated.00.pth", "shard missing"),
    # GGUF metadata of the wrong type
    "gguf-dim-string": (gguf_metadata(llama__embedding_length=("64", T.STRING)), ".gguf", "embedding_length"),
    "gguf-layers-float": (gguf_metadata(llama__block_count=(2.0, T.FLOAT32)), ".gguf", "block_count"),
    "gguf-heads-array": (gguf_metadata(llama__attention__head_count=([4], T.ARRAY)), ".gguf", "head_count"),
    "gguf-theta-string": (gguf_metadata(llama__rope__freq_base=("1e4", T.STRING)), ".gguf", "freq_base"),
    "gguf-eps-negative": (
        gguf_metadata(llama__attention__layer_norm_rms_epsilon=(-1.0, T.FLOAT32)),
        ".gguf",
        "layer_norm_rms_epsilon",
    ),
    "gguf-experts-string": (gguf_metadata(llama__expert_count=("8", T.STRING)), ".gguf", "expert_count"),
    "gguf-alignment-string": (
        gguf_metadata(general__alignment=("32", T.STRING)),
        ".gguf",
        "general.alignment",
    ),
    "gguf-tokens-not-array": (
        gguf_metadata(llama__vocab_size=DELETE, tokenizer__ggml__tokens=("abc", T.STRING)),
        ".gguf",
        "tokenizer.ggml.tokens",
    ),
    # GGUF tensor directory: sizes that overflow or exceed the file
    "gguf-dims-product-overflows": (gguf_dims("token_embd.weight", (2**62, 4)), ".gguf", "token_embd.weight"),
    "gguf-dim-too-large": (gguf_dims("token_embd.weight", (2**64 - 1, 1)), ".gguf", "token_embd.weight"),
    "gguf-dims-past-end": (gguf_dims("token_embd.weight", (64, 10**9)), ".gguf", "token_embd.weight"),
}


@pytest.fixture
def sources(tiny_hf: Path, tiny_hf_sharded: Path, tiny_meta2: Path, tiny_gguf: Path) -> Sources:
    return {"hf": tiny_hf, "hf-sharded": tiny_hf_sharded, "meta": tiny_meta2, "gguf": tiny_gguf}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_one_named_error_everywhere(
    case: str, sources: Sources, tmp_path: Path, herd_cli: CliRun
) -> None:
    make, file, detail = CASES[case]
    bad = make(sources, tmp_path)
    out = tmp_path / "out"
    messages = []
    for argv in (["convert", str(bad), str(out), "--to", "hf"], ["model", "info", str(bad)]):
        code, err = herd_cli(argv)
        assert code == 2 and len(err.splitlines()) == 1, (argv[0], err)
        messages.append(err.removeprefix("herd: error: "))
    with pytest.raises(HerdError) as exc:
        herd.load_model(bad)
    messages.append(str(exc.value))
    for message in messages:
        assert file in message and detail in message, message
    assert not out.exists()


@pytest.mark.parametrize(
    "make",
    [hf_config(), hf_index(lambda i, _: i), meta_params(), gguf_metadata()],
    ids=["hf", "hf-sharded", "meta", "gguf-metadata"],
)
def test_unbroken_copies_are_read(
    make: Callable[[Sources, Path], Path], sources: Sources, tmp_path: Path, herd_cli: CliRun
) -> None:
    """The builders above break only what each case names: unchanged, each copy reads."""
    code, err = herd_cli(["model", "info", str(make(sources, tmp_path))])
    assert (code, err) == (0, "")


def test_shards_linked_into_a_cache_are_read(sources: Sources, tmp_path: Path) -> None:
    """The Hugging Face hub cache links each shard to ``../../blobs/HASH``: the link is the directory's own."""
    snapshot = tmp_path / "models--tiny" / "snapshots" / "abc123"
    blobs = tmp_path / "models--tiny" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for i, file in enumerate(sorted(sources["hf-sharded"].iterdir())):
        shutil.copy(file, blobs / f"blob{i}")
        (snapshot / file.name).symlink_to(Path("../../blobs") / f"blob{i}")
    reference = dict(herd.load_model(sources["hf-sharded"]).state_dict())
    cached = herd.load_model(snapshot).state_dict()
    assert cached.keys() == reference.keys()
    assert all(cached[name].equal(reference[name]) for name in reference)
