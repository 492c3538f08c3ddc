"""herd as an lm-evaluation-harness model: ``--model herd --model_args path=MODEL``, any checkpoint herd loads.

The Llama papers report their benchmarks through evaluation code of their own
(Llama 2 §2.3 and Llama 3 §5.1 compare with other models run "in the same
setup"); lm-evaluation-harness is the open setup most numbers are quoted from.
This adapter lets the harness run every one of its tasks on herd's engine, so a
herd checkpoint (Hugging Face or Meta folder, GGUF file, quantized or not) is
scored by the harness's own prompts and metrics:

- ``loglikelihood``: each (context, continuation) tokenized as lm-eval's
  ``_encode_pair`` does (:func:`herd.eval.loglikelihood.encode_pair`) and
  scored by :func:`herd.eval.loglikelihood.score_requests`, which prefills a
  context once for all its choices; ``(logprob, is_greedy)`` as the HF model
  returns them;
- ``loglikelihood_rolling``: :func:`herd.eval.perplexity.rolling_loglikelihood`,
  lm-eval's disjoint windows of the model's context;
- ``generate_until``: :func:`herd.infer.completion.generate`, one batch per
  ``batch_size`` requests with the same generation arguments: ``until`` (stop
  strings; the tokenizer's EOS and end-of-turn ids stop it too, as lm-eval
  adds EOS to ``until``), ``max_gen_toks`` (256 by default, lm-eval's HF
  default), ``do_sample`` / ``temperature`` and the sampling filters
  ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty`` (sampled rows are
  seeded from ``seed``). A prompt too long for the context loses its oldest
  tokens, keeping ``context − min(max_gen_toks, context / 2)`` (lm-eval keeps
  ``context − max_gen_toks``; the two agree unless more than half the context
  is asked for).

``--model_args``: ``path`` (required), ``tokenizer``, ``dtype`` (fp32, bf16,
fp16), ``batch_size``, ``device`` (default CUDA when present, else CPU),
``quantize`` (int8, int4), ``seed``. They win over lm-eval's ``--batch_size``
and ``--device``, which are used when ``model_args`` does not set them (the CLI
always sends its defaults, ``1`` and ``cuda:0``; a CUDA device on a machine
without one falls back to the CPU, as the HF model does). The harness's chat
templates are not supported: herd renders chats as token ids, the harness
expects a string.

**Registration.** Importing this module registers the class under ``herd``.
lm-eval 0.4.13 finds models only in its own registry (it reads no plugin entry
points), so its ``lm_eval`` command cannot see herd until something imports
this module: ``python -m herd.eval.lm_eval_adapter`` (or :func:`main`) runs
lm-eval's own command line with herd registered, taking the same arguments as
``lm_eval``. lm-eval releases that read the ``lm_eval.models`` entry-point group
find herd by herd's entry point ``herd = "herd.eval.lm_eval_adapter:HerdLM"``
with no import at all. In Python, import this module and call
``lm_eval.simple_evaluate(model="herd", ...)``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import simple_parse_args_string

from herd.errors import ConfigError
from herd.eval.loglikelihood import score_texts
from herd.eval.perplexity import rolling_loglikelihood
from herd.infer.completion import generate
from herd.infer.engine import Engine
from herd.infer.loading import load_for_inference
from herd.infer.quantize import QuantMode

logger = logging.getLogger(__name__)

#: lm-eval's HF model generates at most this many tokens when a task does not say.
MAX_GEN_TOKS = 256
#: Sampling arguments of a task's ``generation_kwargs`` that herd's sampler takes as they are.
SAMPLING_KWARGS = ("top_k", "top_p", "min_p", "repetition_penalty")
#: The ones lm-eval's ``normalize_gen_kwargs`` always sets.
NORMALIZED_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature")
#: lm-eval's command-line options that reach a model's constructor (the rest are lm-eval's own).
CLI_MODEL_OPTIONS = ("batch_size", "device")


def pick_device(device: str | None) -> str:
    """``device``, or CUDA when there is one and CPU otherwise when it is unset or a CUDA device is missing."""
    if device and not (device.startswith("cuda") and not torch.cuda.is_available()):
        return device
    chosen = "cuda" if torch.cuda.is_available() else "cpu"
    if device:
        logger.info("device %s is not available, using %s", device, chosen)
    return chosen


@register_model("herd")
class HerdLM(LM):
    """An lm-eval model backed by herd's engine (see the module docstring for the arguments)."""

    def __init__(
        self,
        path: str,
        tokenizer: str | None = None,
        dtype: str = "fp32",
        batch_size: int | str = 16,
        device: str | None = None,
        quantize: str | None = None,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"herd model_args: batch_size must be a positive integer, got {batch_size!r}")
        model, self.tokenizer = load_for_inference(
            str(path),
            tokenizer=None if tokenizer is None else str(tokenizer),
            dtype=dtype,
            quantize=cast("QuantMode | None", quantize),  # an unknown mode is refused by name there
            device=pick_device(device),
        )
        self.engine = Engine(model)
        self.batch_size = batch_size
        self.seed = seed

    @classmethod
    def create_from_arg_obj(
        cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None
    ) -> HerdLM:
        """The model from ``--model_args``; lm-eval's ``--batch_size`` and ``--device`` fill in what they leave out."""
        extra = {
            key: value
            for key, value in (additional_config or {}).items()
            if key in CLI_MODEL_OPTIONS and value is not None
        }
        return cls(**{**extra, **arg_dict})

    @classmethod
    def create_from_arg_string(
        cls, arg_string: str, additional_config: dict[str, Any] | None = None
    ) -> HerdLM:
        """The model from ``--model_args path=...,dtype=...`` (see :meth:`create_from_arg_obj`)."""
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(log-probability, is_greedy) of each request's continuation after its context."""
        pairs = [(str(r.args[0]), str(r.args[1])) for r in requests]
        scored = score_texts(self.engine, self.tokenizer, pairs, batch_size=self.batch_size)
        results = [(s.logprob, s.is_greedy) for s in scored]
        for pair, result in zip(pairs, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", pair, result)
        return results

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        """The log-probability of each request's whole text, in lm-eval's disjoint windows."""
        results = []
        for request in requests:
            text = request.args[0]
            logprob, _ = rolling_loglikelihood(self.engine, self.tokenizer, text, batch_size=self.batch_size)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), logprob)
            results.append(logprob)
        return results

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Each request's continuation, cut before its first stop string (see the module docstring)."""
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(index)
        results: list[str] = [""] * len(requests)
        for indices in groups.values():
            settings = self._generation_settings(requests[indices[0]].args[1])
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts = [requests[i].args[0] for i in chunk]
                completions = generate(self.engine, self.tokenizer, prompts, truncate="left", **settings)
                for i, completion in zip(chunk, completions, strict=True):
                    results[i] = completion.text
                    self.cache_hook.add_partial("generate_until", requests[i].args, completion.text)
        return results

    def _generation_settings(self, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
        """:func:`herd.infer.completion.generate`'s arguments for a request's ``generation_kwargs``."""
        kwargs = dict(normalize_gen_kwargs(gen_kwargs, MAX_GEN_TOKS))
        unknown = sorted(set(kwargs) - set(NORMALIZED_KWARGS) - set(SAMPLING_KWARGS))
        if unknown:
            raise ConfigError(
                f"herd model: generation_kwargs {unknown} are not supported (herd takes until, max_gen_toks,"
                f" do_sample, temperature, {', '.join(SAMPLING_KWARGS)})"
            )
        sampled = bool(kwargs["do_sample"]) and float(kwargs["temperature"]) > 0
        return {
            "max_new_tokens": int(kwargs["max_gen_toks"]),
            "temperature": float(kwargs["temperature"]) if sampled else 0.0,
            "seed": self.seed if sampled else None,
            "stop": [stop for stop in kwargs["until"] if stop],  # lm-eval ignores empty stop strings
            **{key: kwargs[key] for key in SAMPLING_KWARGS if key in kwargs},
        }


def main() -> None:
    """lm-eval's command line (``lm_eval ...``) with herd registered as ``--model herd``."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
