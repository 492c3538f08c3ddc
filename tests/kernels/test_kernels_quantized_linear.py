"""The CPU kernels (``herd::int4_linear``, ``herd::int8_linear``) against their definitions, the float
product, and bad shapes."""

from __future__ import annotations

import copy

import pytest
import torch

from herd.infer.quantize import Int4Linear, Int8Linear, quantize_int4, quantize_int8
from herd.kernels import quantized_linear

pytestmark = pytest.mark.skipif(
    not quantized_linear.LIBRARY.available(), reason="needs an x86 CPU with AVX512-VNNI and g++"
)


def random_weight(out_features: int, in_features: int) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(0))


def int4_definition(x: torch.Tensor, weight: torch.Tensor, group_size: int) -> torch.Tensor:
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


def int4_kernel(layer: Int4Linear, x: torch.Tensor) -> torch.Tensor:
    return quantized_linear.int4_linear(
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
def test_int4_kernel_equals_its_definition(
    out_features: int, in_features: int, group_size: int, rows: int
) -> None:
    weight = random_weight(out_features, in_features)
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(1))
    got = int4_kernel(Int4Linear(weight, group_size), x)
    expected = int4_definition(x, weight, group_size)
    assert got.shape == (rows, out_features) and got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_int4_kernel_error_against_the_float_product(group_size: int) -> None:
    """Rounding activations to int8 costs under 1% of the product (measured 0.4-0.9% on Gaussian data),
    an order below int4's own weight error; a zero row gives zeros (its scale is 0, not a division by 0)."""
    layer = Int4Linear(random_weight(768, 1024), group_size)
    x = torch.randn(4, 1024, generator=torch.Generator().manual_seed(2))
    x[3] = 0
    got, exact = int4_kernel(layer, x), x @ layer.dequantized(torch.float32).T
    assert ((got[:3] - exact[:3]).norm() / exact[:3].norm()).item() < 0.01
    assert torch.equal(got[3], torch.zeros(768))


def test_int4_kernel_rejects_inconsistent_shapes() -> None:
    layer = Int4Linear(random_weight(16, 128), 32)
    codes, scales, mins = layer.weight, layer.scales, layer.mins
    with pytest.raises(RuntimeError, match="not a multiple of group_size"):
        quantized_linear.int4_linear(torch.randn(1, 100), codes, scales, mins, 16, 32)
    with pytest.raises(RuntimeError, match="codes must be contiguous uint8"):
        quantized_linear.int4_linear(torch.randn(1, 256), codes, scales, mins, 16, 32)
    with pytest.raises(RuntimeError, match="codes must be contiguous uint8"):
        quantized_linear.int4_linear(torch.randn(1, 128), codes, scales, mins, 17, 32)
    with pytest.raises(RuntimeError, match="scales and mins must be contiguous float16"):
        quantized_linear.int4_linear(torch.randn(1, 128), codes, scales.float(), mins, 16, 32)
    with pytest.raises(RuntimeError, match="float32"):
        quantized_linear.int4_linear(torch.randn(1, 128).double(), codes, scales, mins, 16, 32)


def test_int4_layer_takes_the_kernel_for_any_rows_and_else_the_float_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    layer = Int4Linear(torch.randn(40, 256), group_size=64)  # 40 rows: two tiles and a half
    float_weight = layer.dequantized(torch.float32)
    step, prefill = torch.randn(2, 1, 256), torch.randn(2, 40, 256)  # 2 rows: a decode step; 80: a prefill
    for x in (step, prefill):
        assert torch.equal(layer(x), int4_kernel(layer, x.reshape(-1, 256)).reshape(*x.shape[:2], 40))
    expected = layer(step)
    bf16 = copy.deepcopy(layer).bfloat16()(step.bfloat16())  # bf16 activations, fp32 inside the kernel
    assert bf16.dtype == torch.bfloat16 and ((bf16.float() - expected).norm() / expected.norm()) < 0.01
    monkeypatch.setattr(
        quantized_linear.LIBRARY, "loaded", False
    )  # as without the kernel (or with HERD_CPU_KERNELS=0)
    for x in (step, prefill):
        assert torch.allclose(layer(x), x @ float_weight.T, atol=1e-5)


def int8_definition(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The int8 kernel's arithmetic in float64, from ``quantize_int8``'s codes: each group of 32
    activations rounded to int8 (d = max|x| / 127), times the codes, times each row's scale."""
    codes, scales = quantize_int8(weight)
    xg = x.double().reshape(x.shape[0], -1, quantized_linear.INT8_GROUP)
    d = xg.abs().amax(-1, keepdim=True) / 127
    rounded = (torch.round(xg / d.clamp(min=1e-300)) * d).reshape(x.shape[0], -1)
    return (rounded @ codes.double().T) * scales.double()


def int8_kernel(layer: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    return quantized_linear.int8_linear(x, layer.weight, layer.scales, layer.out_features)


@pytest.mark.parametrize(
    ("out_features", "in_features", "rows"),
    [(96, 128, 1), (1536, 576, 1), (576, 1536, 3), (100, 512, 2), (33, 64, 7), (64, 192, 8), (5, 32, 1)],
)
def test_int8_kernel_equals_its_definition(out_features: int, in_features: int, rows: int) -> None:
    weight = random_weight(out_features, in_features)
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(1))
    got = int8_kernel(Int8Linear(weight), x)
    expected = int8_definition(x, weight)
    assert got.shape == (rows, out_features) and got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_int8_kernel_error_and_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounding activations to int8 per 32 inputs costs under 1% of the product; the layer takes the kernel
    for any number of rows, and the float product of its codes without the kernel."""
    layer = Int8Linear(random_weight(40, 256))
    exact_weight = layer.codes(torch.float32) * layer.scales[:40, None]
    x = torch.randn(4, 256, generator=torch.Generator().manual_seed(2))
    x[3] = 0
    got = int8_kernel(layer, x)
    assert ((got[:3] - x[:3] @ exact_weight.T).norm() / (x[:3] @ exact_weight.T).norm()).item() < 0.01
    assert torch.equal(got[3], torch.zeros(40))
    assert torch.equal(layer(x[:2, None]), got[:2, None])
    prefill = torch.randn(40, 256)
    assert torch.equal(layer(prefill), int8_kernel(layer, prefill))
    with pytest.raises(RuntimeError, match="scales must be contiguous float32"):
        quantized_linear.int8_linear(x, layer.weight, layer.scales[:8], 40)
    monkeypatch.setattr(quantized_linear.LIBRARY, "loaded", False)
    for rows in (x[:2], prefill):
        assert torch.allclose(layer(rows), rows @ exact_weight.T, atol=1e-4)
