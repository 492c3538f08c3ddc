"""Meta's ``params.json`` + ``consolidated.NN.pth`` layout: merging, resharding, parity and bad input.

Two independent references: transformers' own Meta→HF conversion script (no
longer shipped in transformers 5, so ``make`` downloads the 4.46 wheel into
``.venv/reference`` and the test runs the script from it), and a
Meta-convention forward pass written from the Llama 2 reference code's
equations (RoPE on interleaved pairs via complex numbers, no row permutation),
both run on shards built by hand from docs/spec.md §1's merge rules.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlamaForCausalLM

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.gguf import GGUFReader, write_gguf
from herd.checkpoint.hf import HFReader, write_hf
from herd.checkpoint.load import load_model, model_tensors
from herd.checkpoint.meta import MetaReader, params_from_config, shard_name, write_meta
from herd.cli import main
from herd.errors import CheckpointError
from herd.model.build import build_model
from herd.model.config import ModelConfig, llama_hidden_dim
from herd.model.presets import get_preset
from herd.model.transformer import Transformer

# GQA with kv heads divisible by 4 so the same model writes as 1, 2 or 4 shards.
CONFIG = get_preset("llama2-tiny-gqa").replace(n_kv_heads=4)
META_KEYS = {
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "multiple_of",
    "ffn_dim_multiplier",
    "norm_eps",
    "rope_theta",
    "use_scaled_rope",
}


class NotATensor:
    """A custom class: a pickle holding it must be refused, never instantiated."""


@pytest.fixture(scope="module")
def model() -> Transformer:
    return build_model(CONFIG, seed=3)


@pytest.fixture(scope="module")
def meta2(model: Transformer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model`` written by herd as a 2-shard Meta checkpoint."""
    return write_meta(
        tmp_path_factory.mktemp("meta") / "m2", CheckpointInfo(CONFIG), model_tensors(model), shards=2
    )


def _tokens(config: ModelConfig, length: int = 24) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0))


def _same_tensors(reader: MetaReader, model: Transformer) -> bool:
    return all(
        torch.equal(got, want)
        for (_, got), (_, want) in zip(reader.tensors(), model_tensors(model), strict=True)
    )


# ---- an independent Meta checkpoint and forward pass ---------------------------------------------


def _hand_built_shards(model: Transformer, shards: int, vocab_split: bool) -> list[dict[str, torch.Tensor]]:
    """Meta shards built from docs/spec.md §1 alone: q/k rows to interleaved order, then split per tensor."""
    c = model.config
    out: list[dict[str, torch.Tensor]] = [{"rope.freqs": torch.ones(c.head_dim // 2)} for _ in range(shards)]
    for name, w in model_tensors(model):
        leaf = name.split(".")[-2]
        if leaf in ("wq", "wk"):
            n = c.n_heads if leaf == "wq" else c.n_kv_heads
            w = w.view(n, 2, c.head_dim // 2, c.dim).transpose(1, 2).reshape(n * c.head_dim, c.dim)
        if w.ndim == 1:
            parts = [w] * shards
        elif leaf in ("wo", "w2") or (leaf == "tok_embeddings" and not vocab_split):
            parts = list(w.chunk(shards, dim=1))
        else:
            parts = list(w.chunk(shards, dim=0))
        for state, part in zip(out, parts, strict=True):
            state[name] = part.clone()
    return out


def _write_hand_built(dst: Path, model: Transformer, shards: int, vocab_split: bool) -> Path:
    c = model.config
    dst.mkdir(parents=True)
    for i, state in enumerate(_hand_built_shards(model, shards, vocab_split)):
        torch.save(state, dst / f"consolidated.{i:02d}.pth")
    params = {
        "dim": c.dim,
        "n_layers": c.n_layers,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "multiple_of": c.multiple_of,
        "ffn_dim_multiplier": c.ffn_dim_multiplier,
        "norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        # Llama 1/2 files leave the vocabulary to the tokenizer.
        "vocab_size": c.vocab_size if vocab_split else -1,
    }
    (dst / "params.json").write_text(json.dumps(params))
    return dst


def _meta_reference_logits(dst: Path, tokens: torch.Tensor) -> torch.Tensor:
    """Llama 2 reference-code forward over the raw shards (merged by hand), RoPE on interleaved pairs."""
    params = json.loads((dst / "params.json").read_text())
    shards = [torch.load(f, weights_only=True) for f in sorted(dst.glob("consolidated.*.pth"))]
    dim, n_heads, n_kv, eps = params["dim"], params["n_heads"], params["n_kv_heads"], params["norm_eps"]
    emb_dim = 0 if shards[0]["tok_embeddings.weight"].shape[1] == dim else 1

    def w(name: str) -> torch.Tensor:
        leaf = name.split(".")[-2]
        if leaf.endswith("norm"):
            return shards[0][name]
        cat_dim = 1 if leaf in ("wo", "w2") else emb_dim if leaf == "tok_embeddings" else 0
        return torch.cat([s[name] for s in shards], dim=cat_dim)

    hd = dim // n_heads
    bsz, seq = tokens.shape
    freqs = 1.0 / (params["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
    freqs_cis = torch.polar(torch.ones(seq, hd // 2), torch.outer(torch.arange(seq).float(), freqs))

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def rope(x: torch.Tensor) -> torch.Tensor:
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3)

    mask = torch.full((seq, seq), float("-inf")).triu(1)
    h = F.embedding(tokens, w("tok_embeddings.weight"))
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        x = rms(h, w(p + "attention_norm.weight"))
        q = rope((x @ w(p + "attention.wq.weight").T).view(bsz, seq, n_heads, hd))
        k = rope((x @ w(p + "attention.wk.weight").T).view(bsz, seq, n_kv, hd))
        v = (x @ w(p + "attention.wv.weight").T).view(bsz, seq, n_kv, hd)
        k, v = (t.repeat_interleave(n_heads // n_kv, dim=2).transpose(1, 2) for t in (k, v))
        scores = q.transpose(1, 2) @ k.transpose(2, 3) / math.sqrt(hd) + mask
        attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(bsz, seq, -1)
        h = h + attn @ w(p + "attention.wo.weight").T
        x = rms(h, w(p + "ffn_norm.weight"))
        ffn = F.silu(x @ w(p + "feed_forward.w1.weight").T) * (x @ w(p + "feed_forward.w3.weight").T)
        h = h + ffn @ w(p + "feed_forward.w2.weight").T
    return rms(h, w("norm.weight")) @ w("output.weight").T


@pytest.mark.parametrize("vocab_split", [False, True], ids=["llama2-dim-split", "llama3-vocab-split"])
@torch.no_grad()
def test_hand_built_shards_match_meta_reference_and_transformers(
    model: Transformer, tmp_path: Path, vocab_split: bool
) -> None:
    src = _write_hand_built(tmp_path / "meta", model, 2, vocab_split)
    tokens = _tokens(CONFIG)
    reference = _meta_reference_logits(src, tokens)
    # The hand-built shards really are Meta's convention: the reference reproduces the original model.
    assert (reference - model(tokens)).abs().max() <= 1e-4

    with MetaReader(src) as reader:
        assert reader.shards == 2 and reader.config == CONFIG.replace(max_seq_len=4096)
        assert _same_tensors(reader, model)
    herd_logits = load_model(src)(tokens)
    assert (herd_logits - reference).abs().max() <= 1e-4

    with MetaReader(src) as reader:
        write_hf(tmp_path / "hf", reader.info, reader.tensors())
    hf_logits = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()(tokens).logits
    assert (hf_logits - reference).abs().max() <= 1e-4


def _transformers_conversion_script(tmp_path: Path) -> object:
    """``convert_llama_weights_to_hf`` from the transformers 4.46 wheel that ``make`` downloads."""
    import importlib.util
    import sys
    import zipfile

    wheels = sorted((Path(sys.prefix) / "reference").glob("transformers-4.*.whl"))
    if not wheels:
        pytest.fail(
            f"no transformers 4.x wheel in {Path(sys.prefix) / 'reference'} (make install downloads it)"
        )
    member = "transformers/models/llama/convert_llama_weights_to_hf.py"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        script = tmp_path / "convert_llama_weights_to_hf.py"
        script.write_bytes(wheel.read(member))
    spec = importlib.util.spec_from_file_location("convert_llama_weights_to_hf", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def test_transformers_conversion_script_agrees_with_herd(model: Transformer, tmp_path: Path) -> None:
    """A hand-built 2-shard Meta checkpoint: transformers' converter and herd's reader give the same logits.

    The script saves bf16 weights, so herd's reading is rounded to bf16 too before comparing in fp32.
    """
    src = _write_hand_built(tmp_path / "meta", model, 2, vocab_split=False)
    script = _transformers_conversion_script(tmp_path)
    script.write_model(
        model_path=str(tmp_path / "hf"),
        input_base_path=str(src),
        num_shards=2,
        llama_version="2",
        vocab_size=CONFIG.vocab_size,
    )
    theirs = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ours = load_model(src, dtype="bf16").float()
    tokens = _tokens(CONFIG)
    assert (theirs(tokens).logits - ours(tokens)).abs().max() <= 1e-4


# ---- herd's writer: round trips and resharding ---------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 4])
@torch.no_grad()
def test_write_read_round_trip_is_bit_exact(model: Transformer, tmp_path: Path, shards: int) -> None:
    dst = write_meta(tmp_path / "m", CheckpointInfo(CONFIG), model_tensors(model), shards=shards)
    assert sorted(p.name for p in dst.glob("*.pth")) == [shard_name(i) for i in range(shards)]
    with MetaReader(dst) as reader:
        assert reader.shards == shards
        assert _same_tensors(reader, model)
    tokens = _tokens(CONFIG)
    assert torch.equal(load_model(dst)(tokens), model(tokens))


def test_shards_hold_slices_in_meta_order(meta2: Path, model: Transformer) -> None:
    """Each shard has 1/2 of every split tensor (whole heads, interleaved rows) and full norms."""
    s0 = torch.load(meta2 / "consolidated.00.pth", weights_only=True)
    hand = _hand_built_shards(model, 2, vocab_split=False)[0]
    hand.pop("rope.freqs")
    assert s0.keys() == hand.keys()
    assert all(torch.equal(s0[name], hand[name]) for name in hand)


def test_reshard_2_to_4_to_1_is_bit_exact(meta2: Path, model: Transformer, tmp_path: Path) -> None:
    with MetaReader(meta2) as reader:
        four = write_meta(tmp_path / "m4", reader, shards=4)
    with MetaReader(four) as reader:
        one = write_meta(tmp_path / "m1", reader, shards=1)
    with MetaReader(one) as reader:
        assert reader.shards == 1 and _same_tensors(reader, model)


def test_cli_reshards(meta2: Path, model: Transformer, tmp_path: Path) -> None:
    dst = tmp_path / "m4"
    assert main(["convert", str(meta2), str(dst), "--to", "meta", "--shards", "4", "--quiet"]) == 0
    with MetaReader(dst) as reader:
        assert reader.shards == 4 and _same_tensors(reader, model)


def test_hf_to_meta_to_gguf_to_hf_is_bit_exact(model: Transformer, tmp_path: Path) -> None:
    """The issue's round trip, HF → Meta (2 shards) → GGUF F32 → HF, in fp32."""
    hf = write_hf(tmp_path / "hf", CheckpointInfo(CONFIG), model_tensors(model))
    with HFReader(hf) as reader:
        meta = write_meta(tmp_path / "meta", reader, shards=2)
    with MetaReader(meta) as reader:
        gguf = write_gguf(tmp_path / "m.gguf", reader.info, reader.tensors(), dtype="f32")
    with GGUFReader(gguf) as reader:
        back = write_hf(tmp_path / "back", reader.info, reader.tensors())
    with HFReader(hf) as a, HFReader(back) as b:
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.tensors(), b.tensors(), strict=True))
        assert b.config == a.config.replace(max_seq_len=b.config.max_seq_len)


def test_dtype_conversion(model: Transformer, tmp_path: Path) -> None:
    dst = write_meta(
        tmp_path / "bf16", CheckpointInfo(CONFIG), model_tensors(model), shards=2, dtype=torch.bfloat16
    )
    with MetaReader(dst) as reader:
        for (_, got), (_, want) in zip(reader.tensors(), model_tensors(model), strict=True):
            assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))


@torch.no_grad()
def test_family_configs_round_trip(family_config: ModelConfig, tmp_path: Path) -> None:
    """Every tiny family (scaled RoPE, tied embeddings, odd head_dim) survives Meta and back."""
    model = build_model(family_config, seed=5)
    shards = 2 if family_config.n_kv_heads % 2 == 0 else 1
    dst = write_meta(
        tmp_path / "m", CheckpointInfo(family_config), lambda: model_tensors(model), shards=shards
    )
    with MetaReader(dst) as reader:
        # The format has neither tied embeddings nor a context length.
        assert reader.config == family_config.replace(
            max_seq_len=reader.config.max_seq_len, tie_embeddings=False
        )
        assert torch.equal(reader.get("output.weight"), model.output.weight)
    tokens = _tokens(family_config)
    assert torch.equal(load_model(dst)(tokens), model(tokens))


# ---- params.json ---------------------------------------------------------------------------------


def test_params_json_as_meta_writes_it() -> None:
    """Released params.json files (Llama 3.1 8B, Llama 2 70B) come out key for key."""
    assert params_from_config(get_preset("llama3.1-8b")) == {
        "dim": 4096,
        "ffn_dim_multiplier": 1.3,
        "multiple_of": 1024,
        "n_heads": 32,
        "n_kv_heads": 8,
        "n_layers": 32,
        "norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "use_scaled_rope": True,
        "vocab_size": 128256,
    }
    llama2_70b = params_from_config(get_preset("llama2-70b"))
    assert llama2_70b["multiple_of"] == 4096 and llama2_70b["ffn_dim_multiplier"] == 1.3
    assert set(llama2_70b) <= META_KEYS


@given(dim=st.integers(1, 64).map(lambda n: 8 * n), hidden_dim=st.integers(1, 100_000))
def test_any_hidden_dim_expressed_by_llama_rule(dim: int, hidden_dim: int) -> None:
    """multiple_of/ffn_dim_multiplier are chosen to reproduce any hidden size with Meta's keys only."""
    config = ModelConfig(dim=dim, n_layers=1, n_heads=4, vocab_size=8, hidden_dim=hidden_dim)
    params = params_from_config(config)
    assert set(params) <= META_KEYS
    rule = llama_hidden_dim(params["dim"], params["multiple_of"], params.get("ffn_dim_multiplier"))
    assert rule == hidden_dim


def test_smollm2_hidden_dim_needs_no_multiplier() -> None:
    """SmolLM2's 1536 at dim 576 is the plain rule: multiple_of 256, no multiplier."""
    params = params_from_config(get_preset("smollm2-135m"))
    assert (params["multiple_of"], "ffn_dim_multiplier" in params) == (256, False)


def test_hidden_dim_from_weights_when_rule_disagrees(meta2: Path, tmp_path: Path) -> None:
    dst = tmp_path / "m"
    shutil.copytree(meta2, dst)
    params = json.loads((dst / "params.json").read_text())
    (dst / "params.json").write_text(json.dumps(params | {"ffn_dim_multiplier": 2.0}))
    with pytest.warns(UserWarning, match="using the weights"), MetaReader(dst) as reader:
        assert reader.config.hidden_dim == CONFIG.hidden_dim


# ---- bad input -----------------------------------------------------------------------------------


def _copy_with(meta2: Path, tmp_path: Path, **params: object) -> Path:
    dst = tmp_path / "bad"
    shutil.copytree(meta2, dst)
    if params:
        old = json.loads((dst / "params.json").read_text())
        (dst / "params.json").write_text(json.dumps(old | params))
    return dst


def test_writer_refuses_kv_heads_not_divisible(model: Transformer, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"n_kv_heads \(4\) is not divisible by 8"):
        write_meta(tmp_path / "m", CheckpointInfo(CONFIG), model_tensors(model), shards=8)
    assert not (tmp_path / "m").exists()


def test_writer_refuses_one_shot_iterator_for_several_shards(model: Transformer, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="one-shot iterator"):
        write_meta(tmp_path / "m", CheckpointInfo(CONFIG), iter(model_tensors(model)), shards=2)


def test_missing_shard(meta2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = _copy_with(meta2, tmp_path)
    (dst / "consolidated.00.pth").unlink()
    with pytest.raises(CheckpointError, match=r"consolidated\.00\.pth: shard missing"):
        MetaReader(dst)
    assert main(["convert", str(dst), str(tmp_path / "out"), "--to", "hf", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "consolidated.00.pth" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_shard_count_not_dividing_heads(meta2: Path, tmp_path: Path) -> None:
    dst = _copy_with(meta2, tmp_path)
    shutil.copy(dst / "consolidated.01.pth", dst / "consolidated.02.pth")
    with pytest.raises(CheckpointError, match=r"consolidated\.00\.pth"):
        MetaReader(dst)


def test_truncated_shard(meta2: Path, tmp_path: Path) -> None:
    dst = _copy_with(meta2, tmp_path)
    shard = dst / "consolidated.01.pth"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"consolidated\.01\.pth: .*truncated"):
        MetaReader(dst)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"n_layers": 2, "n_heads": 8}', "missing key 'dim'"),
        ('{"dim": "64", "n_layers": 2, "n_heads": 8}', "dim must be a positive integer"),
    ],
)
def test_bad_params_json(meta2: Path, tmp_path: Path, text: str, problem: str) -> None:
    dst = _copy_with(meta2, tmp_path)
    (dst / "params.json").write_text(text)
    with pytest.raises(CheckpointError, match=rf"params\.json: {problem}"):
        MetaReader(dst)


def test_bad_params_value(meta2: Path, tmp_path: Path) -> None:
    dst = _copy_with(meta2, tmp_path, n_heads=6)
    with pytest.raises(CheckpointError, match=r"params\.json: .*n_heads"):
        MetaReader(dst)


@pytest.mark.parametrize(
    ("params", "tensor"),
    [
        ({"n_kv_heads": 8}, "attention.wk"),
        ({"vocab_size": 1000}, "tok_embeddings"),
        ({"n_layers": 3}, "layers.2"),
    ],
)
def test_shapes_disagreeing_with_params(meta2: Path, tmp_path: Path, params: dict, tensor: str) -> None:
    dst = _copy_with(meta2, tmp_path, **params)
    with (
        pytest.raises(CheckpointError, match=rf"consolidated\.00\.pth: tensor \S*{tensor}"),
        MetaReader(dst) as r,
    ):
        list(r.tensors())


def test_pickle_with_arbitrary_object_is_refused(meta2: Path, tmp_path: Path) -> None:
    dst = _copy_with(meta2, tmp_path)
    state = torch.load(dst / "consolidated.01.pth", weights_only=True)
    torch.save(state | {"payload": NotATensor()}, dst / "consolidated.01.pth")
    with pytest.raises(
        CheckpointError, match=r"consolidated\.01\.pth: refused: .*never runs arbitrary"
    ) as exc:
        MetaReader(dst)
    assert "NotATensor" in str(exc.value)  # the offending object is named...
    assert "weights_only" not in str(exc.value) and "trust" not in str(
        exc.value
    )  # ...with no advice to load it
