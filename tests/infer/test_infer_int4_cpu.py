"""The int4 CPU kernel (``herd::int4_linear``) against its definition, the float product, and bad shapes."""

from __future__ import annotations

import copy

import pytest
import torch

from herd.infer import int4_cpu
from herd.infer.quantize import Int4Linear, quantize_int4

pytestmark = pytest.mark.skipif(not int4_cpu.available(), reason="needs an x86 CPU with AVX512-VNNI and g++")


def random_weight(out_features: int, in_features: int) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(0))


def definition(x: torch.Tensor, weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """The kernel's arithmetic in float64, from ``quantize_int4``'s row-major codes (not the tiled layout):
    each group of activations rounded to int8 (d = max|x| / 127) times the centred codes (q - 8)·scale,
    plus each group's float sum times (minimum + 8·scale); scales and minimums rounded to float16."""
    codes, scales, mins = quantize_int4(weight, group_size)
    scales, mins = scales.half().double(), mins.half().double()
    xg = x.double().reshape(x.shape[0], -1, group_size)
    d = xg.abs().amax(-1, keepdim=True) / 127
    rounded = torch.round(xg / d.clamp(min=1e-300)) * d
    dot = torch.einsum("rgk,ngk->rn", rounded, (codes.double() - 8) * scales[..., None])
    return dot + xg.sum(-1) @ (mins + 8 * scales).T


def kernel(layer: Int4Linear, x: torch.Tensor) -> torch.Tensor:
    return int4_cpu.int4_linear(
        x, layer.weight, layer.scales, layer.mins, layer.out_features, layer.group_size
    )


@pytest.mark.parametrize(
    ("out_features", "in_features", "group_size", "rows"),
    [
        (96, 128, 32, 1),
        (1536, 576, 64, 1),  # SmolLM2's w1
        (576, 1536, 32, 3),
        (100, 512, 256, 2),  # 100 rows: a last tile of 4
        (33, 512, 128, 7),  # activation rows in a block of 4 and a block of 3
        (64, 192, 64, 8),
        (5, 64, 8, 1),  # fewer rows than one tile; the smallest group
    ],
)
def test_kernel_equals_its_definition(
    out_features: int, in_features: int, group_size: int, rows: int
) -> None:
    weight = random_weight(out_features, in_features)
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(1))
    got = kernel(Int4Linear(weight, group_size), x)
    expected = definition(x, weight, group_size)
    assert got.shape == (rows, out_features) and got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_kernel_error_against_the_float_product(group_size: int) -> None:
    """Rounding activations to int8 costs under 1% of the product (measured 0.4-0.9% on Gaussian data),
    an order below int4's own weight error; a zero row gives zeros (its scale is 0, not a division by 0)."""
    layer = Int4Linear(random_weight(768, 1024), group_size)
    x = torch.randn(4, 1024, generator=torch.Generator().manual_seed(2))
    x[3] = 0
    got, exact = kernel(layer, x), x @ layer.dequantized(torch.float32).T
    assert ((got[:3] - exact[:3]).norm() / exact[:3].norm()).item() < 0.01
    assert torch.equal(got[3], torch.zeros(768))


def test_kernel_rejects_inconsistent_shapes() -> None:
    layer = Int4Linear(random_weight(16, 128), 32)
    codes, scales, mins = layer.weight, layer.scales, layer.mins
    with pytest.raises(RuntimeError, match="not a multiple of group_size"):
        int4_cpu.int4_linear(torch.randn(1, 100), codes, scales, mins, 16, 32)
    with pytest.raises(RuntimeError, match="codes must be contiguous uint8"):
        int4_cpu.int4_linear(torch.randn(1, 256), codes, scales, mins, 16, 32)
    with pytest.raises(RuntimeError, match="codes must be contiguous uint8"):
        int4_cpu.int4_linear(torch.randn(1, 128), codes, scales, mins, 17, 32)
    with pytest.raises(RuntimeError, match="scales and mins must be contiguous float16"):
        int4_cpu.int4_linear(torch.randn(1, 128), codes, scales.float(), mins, 16, 32)
    with pytest.raises(RuntimeError, match="float32"):
        int4_cpu.int4_linear(torch.randn(1, 128).double(), codes, scales, mins, 16, 32)


def test_layer_takes_the_kernel_for_few_rows_and_else_the_float_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    layer = Int4Linear(torch.randn(40, 256), group_size=64)  # 40 rows: two tiles and a half
    float_weight = layer.dequantized(torch.float32)
    few, many = torch.randn(2, 1, 256), torch.randn(2, 8, 256)  # 2 rows: a decode step; 16: a prefill
    expected = kernel(layer, few.reshape(2, 256)).reshape(2, 1, 40)
    assert torch.equal(layer(few), expected)
    assert torch.allclose(layer(many), many @ float_weight.T, atol=1e-5)
    bf16 = copy.deepcopy(layer).bfloat16()(few.bfloat16())  # bf16 activations, fp32 inside the kernel
    assert bf16.dtype == torch.bfloat16 and ((bf16.float() - expected).norm() / expected.norm()) < 0.01
    monkeypatch.setattr(int4_cpu, "_built", [False])  # as without the kernel (or with HERD_CPU_KERNELS=0)
    assert torch.allclose(layer(few), few @ float_weight.T, atol=1e-5)
