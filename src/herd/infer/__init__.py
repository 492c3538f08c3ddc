"""Inference: KV-cached, batched, streaming generation; sampling; weight-only quantization; chat.

``generate(model, tokenizer, prompts, ...)`` is the text-level entry point
(:mod:`herd.infer.completion`); :class:`Engine` holds a model's cache and
(optionally compiled) decode step for reuse; :func:`generate_ids` is the
token-level loop; :func:`quantize_model` swaps linear layers for int8/int4
weight-only versions; :func:`chat` answers a list of messages in the model's
chat format and :class:`ChatSession` keeps a conversation.
"""

from herd.infer.chat_session import ChatSession, chat
from herd.infer.completion import Completion, generate
from herd.infer.engine import Engine
from herd.infer.generate import Generated, generate_ids
from herd.infer.quantize import quantize_model
from herd.infer.sampling import SamplingParams

__all__ = [
    "ChatSession",
    "Completion",
    "Engine",
    "Generated",
    "SamplingParams",
    "chat",
    "generate",
    "generate_ids",
    "quantize_model",
]
