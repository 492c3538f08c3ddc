"""Training throughput and MFU of herd's trainer against transformers' LlamaForCausalLM (docs/pretrain.md).

Both models have the same shape, the same initial weights, the same AdamW
(herd's ``build_optimizer``: β 0.9/0.95, eps 1e-5, decay on matrices), clip
1.0, and consume the same batches from the same token shards, in the same
process. herd runs through its real trainer (``Trainer.train_step`` +
optimizer step); transformers runs the equivalent loop on its own model
(``labels=`` loss). The first steps are warm-up and are not timed; the two
implementations alternate step by step so that other load affects both alike.

CPU (fixed config: dim 512, 8 layers, 8 heads, 4 kv heads, seq 512, vocab 32000, fp32):

    python -P bench/train.py --steps 8 --warmup 2 --batch 4 [--compile]

GPU (when present: a ~1B model, dim 2048 × 16 layers, bf16 autocast, MFU vs the GPU's peak):

    python -P bench/train.py --model 1b --seq-len 2048 --batch 8 --steps 10 --warmup 3 --compile

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may
shadow standard modules.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import write_hf
from herd.checkpoint.load import model_tensors
from herd.model.info import model_info
from herd.train.config import config_from_dict
from herd.train.dataset import MixtureSampler, read_windows, write_dataset
from herd.train.loop import Trainer
from herd.train.metrics import cpu_peak_flops, mfu, peak_flops
from herd.train.optim import build_optimizer

SHAPES = {
    "small": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=4, vocab_size=32000),
    "1b": dict(dim=2048, n_layers=16, n_heads=16, n_kv_heads=8, vocab_size=32000),
}


def synthetic_dataset(path: Path, vocab: int, tokens: int) -> Path:
    """Random documents of 100–2,000 tokens (the throughput does not depend on the text)."""
    rng = np.random.default_rng(0)
    docs, total = [], 0
    while total < tokens:
        n = int(rng.integers(100, 2000))
        docs.append(rng.integers(0, vocab, n).tolist())
        total += n
    return write_dataset(path, {"train": {"synthetic": docs}}, vocab_size=vocab)


def hf_model(trainer: Trainer, tmp: Path) -> torch.nn.Module:
    """transformers' LlamaForCausalLM with the weights of herd's freshly initialised model (via write_hf)."""
    from transformers import LlamaForCausalLM

    path = write_hf(tmp / "hf", CheckpointInfo(trainer.model_config), model_tensors(trainer.model))
    model = LlamaForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    return model.to(trainer.runtime.device).train()


def herd_step(trainer: Trainer) -> None:
    """One step of herd's trainer: forward/backward over the micro-batches, clip, AdamW."""
    trainer.train_step()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.step += 1


def hf_stepper(trainer: Trainer, model: torch.nn.Module) -> Callable[[], None]:
    """The same step on transformers' model, fed the same batches by an identical sampler."""
    opt = build_optimizer(model, trainer.config.optim)
    sampler = MixtureSampler(
        trainer.sampler.sources, trainer.config.data.seq_len, [1.0], trainer.config.train.seed
    )
    dev, seq_len, mb = (
        trainer.runtime.device,
        trainer.config.data.seq_len,
        trainer.config.train.micro_batch_size,
    )

    def step() -> None:
        picks = sampler.draw(trainer.seqs_per_step)
        for j in range(trainer.accum):
            batch = read_windows(sampler.sources, picks[j * mb : (j + 1) * mb], seq_len)
            with trainer._autocast():
                # transformers shifts the labels itself: the same next-token objective
                loss = model(batch.inputs.to(dev), labels=batch.inputs.to(dev)).loss
            (loss / trainer.accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.config.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def interleaved_times(
    steps: dict[str, Callable[[], None]], n: int, warmup: int, cuda: bool
) -> dict[str, list[float]]:
    """Alternate the implementations step by step, so load from other processes hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + n):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(SHAPES), default=None, help="small on CPU, 1b on GPU")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4, help="sequences per step (one micro-batch)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile herd's blocks")
    parser.add_argument(
        "--document-mask",
        action="store_true",
        help="herd masks attention across packed documents (Llama 3 §3.2); transformers cannot, so off by default",
    )
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    shape = SHAPES[args.model or ("1b" if gpu else "small")]
    with tempfile.TemporaryDirectory() as tmp:
        tokens = (args.steps + args.warmup) * args.batch * (args.seq_len + 1) * 2
        data = synthetic_dataset(Path(tmp) / "data", shape["vocab_size"], tokens)
        config = config_from_dict(
            {
                "out_dir": str(Path(tmp) / "run"),
                "model": {**shape, "max_seq_len": args.seq_len},
                "data": {"path": str(data), "seq_len": args.seq_len, "document_mask": args.document_mask},
                "train": {
                    "steps": args.steps + args.warmup,
                    "batch_tokens": args.batch * args.seq_len,
                    "micro_batch_size": args.batch,
                    "compile": args.compile,
                },
                "log": {"progress": False, "tensorboard": False},
            }
        )
        trainer = Trainer(config)
        hf = hf_model(trainer, Path(tmp))
        steps = {"herd": lambda: herd_step(trainer), "transformers": hf_stepper(trainer, hf)}
        times = interleaved_times(steps, args.steps, args.warmup, gpu)
        trainer.close()
    step_tokens = args.batch * args.seq_len
    flops = model_info(trainer.model_config, args.seq_len).training_flops_per_token
    peak = peak_flops(trainer.runtime.device)
    if not gpu:  # the CPU probe ran before the steps; under other load, probe again and keep the best
        cpu_peak_flops.cache_clear()
        peak = max(peak, cpu_peak_flops())
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"device: {device}; peak {peak / 1e12:.3f} TFLOP/s; model {shape}; seq {args.seq_len}; batch {args.batch}"
    )
    print(
        f"{'':14}{'mean step s':>12}{'tokens/s':>10}{'MFU':>8}{'best step s':>13}{'tokens/s':>10}{'MFU':>8}"
    )
    mean_tps, best_tps = {}, {}
    for name, samples in times.items():
        # Throughput is tokens over the whole timed run (the mean step); the best step, the one least
        # disturbed by other load on a shared machine, is shown beside it.
        mean, best = statistics.fmean(samples), min(samples)
        mean_tps[name], best_tps[name] = step_tokens / mean, step_tokens / best
        print(
            f"{name:14}{mean:>12.3f}{mean_tps[name]:>10.0f}{100 * mfu(flops, mean_tps[name], peak, 1):>7.1f}%"
            f"{best:>13.3f}{best_tps[name]:>10.0f}{100 * mfu(flops, best_tps[name], peak, 1):>7.1f}%"
        )
    print(
        f"speed-up herd / transformers: {mean_tps['herd'] / mean_tps['transformers']:.2f}× in throughput, "
        f"{best_tps['herd'] / best_tps['transformers']:.2f}× best step against best step"
    )


if __name__ == "__main__":
    main()
