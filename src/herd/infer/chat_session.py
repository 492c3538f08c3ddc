"""Chat with a model in its own chat format: one reply to given messages, or a multi-turn session.

:func:`chat` answers one conversation (or a batch of them) given as a list of
messages. :class:`ChatSession` keeps a conversation across turns. Each turn renders the whole conversation with :func:`herd.tokenizer.chat.chat_format`
(Llama 2 ``[INST]``, Llama 3 headers, or the tokenizer's jinja template such as
SmolLM2's ChatML) and generates the assistant's reply. When the conversation
no longer fits the context window with room for a reply, the oldest
user/assistant exchanges are dropped (the system message stays). The engine's
KV cache keeps the previous turns, so only the new tokens are prefilled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast, overload

from herd.errors import HerdError
from herd.infer.completion import Completion, StreamCallback, complete_ids
from herd.infer.engine import Engine
from herd.infer.generate import check_max_new_tokens
from herd.infer.sampling import SamplingParams
from herd.model.transformer import Transformer
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.chat import ChatError
from herd.tokenizer.chat import chat_format as find_chat_format

Message = dict[str, str]
Conversation = Sequence[Mapping[str, str]]


class ChatSession:
    """The messages so far and how to answer the next one."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Tokenizer,
        *,
        system: str | None = None,
        sampling: SamplingParams | None = None,
        max_new_tokens: int = 512,
        style: str | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.format = find_chat_format(tokenizer, style)
        self.system = system
        self.sampling = sampling or SamplingParams()
        self.max_new_tokens = max_new_tokens
        self.messages: list[Message] = []
        self.reset()

    def reset(self) -> None:
        """Start over (the system message is kept)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    @property
    def reply_room(self) -> int:
        """Context positions kept free for the reply: ``max_new_tokens``, at most half the context."""
        return min(self.max_new_tokens, self.engine.context // 2)

    def fit(self, messages: list[Message]) -> tuple[list[Message], list[int]]:
        """``messages`` less the oldest exchanges that do not fit, and their rendered prompt."""
        head = 1 if messages and messages[0]["role"] == "system" else 0
        while True:
            ids = self.format.render_prompt(messages)
            if len(ids) + self.reply_room <= self.engine.context:
                return messages, ids
            if len(messages) - head <= 1:
                raise HerdError(
                    f"the message does not fit the context: {len(ids)} tokens plus {self.reply_room} for the "
                    f"reply exceed {self.engine.context}"
                )
            messages = messages[:head] + messages[head + 2 :]

    def send(self, text: str, stream: Callable[[str], None] | None = None) -> Completion:
        """Add a user message, generate the reply (streamed to ``stream``) and keep both in the history."""
        if not text.strip():
            raise HerdError("empty message")
        messages = [*self.messages, {"role": "user", "content": text}]
        messages, ids = self.fit(messages)
        completion = complete_ids(
            self.engine,
            self.tokenizer,
            [ids],
            self.max_new_tokens,
            self.sampling,
            stream=None if stream is None else lambda _row, delta: stream(delta),
        )[0]
        self.messages = [*messages, {"role": "assistant", "content": completion.text.strip()}]
        return completion


@overload
def chat(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    messages: Conversation,
    *,
    max_new_tokens: int = ...,
    temperature: float = ...,
    top_k: int | None = ...,
    top_p: float | None = ...,
    min_p: float | None = ...,
    repetition_penalty: float = ...,
    seed: int | None = ...,
    chat_format: str | None = ...,
    stream: StreamCallback | None = ...,
) -> str: ...
@overload
def chat(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    messages: Sequence[Conversation],
    *,
    max_new_tokens: int = ...,
    temperature: float = ...,
    top_k: int | None = ...,
    top_p: float | None = ...,
    min_p: float | None = ...,
    repetition_penalty: float = ...,
    seed: int | None = ...,
    chat_format: str | None = ...,
    stream: StreamCallback | None = ...,
) -> list[str]: ...
def chat(
    model: Transformer | Engine,
    tokenizer: Tokenizer,
    messages: Conversation | Sequence[Conversation],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    chat_format: str | None = None,
    stream: StreamCallback | None = None,
) -> str | list[str]:
    """The assistant's reply to ``messages`` (``{"role": ..., "content": ...}`` dicts ending with a user turn).

    The conversation is rendered in the model's chat format (``chat_format``:
    ``"llama2"``, ``"llama3"``, ``"jinja"``, or None to detect it, see
    :func:`herd.tokenizer.chat.chat_format`) and answered like ``herd chat``
    answers it, until one of the tokenizer's stop ids (end of turn, EOS),
    ``max_new_tokens``, or the end of the context. The reply is the text as
    ``herd chat`` prints it. A list of conversations is answered in one batch,
    one reply each, conversation ``i`` sampled with seed ``seed + i``.
    Sampling is as in :func:`herd.infer.generate` (default: greedy);
    ``stream(i, text)`` receives each reply's text as it is generated. Pass an
    :class:`Engine` instead of the model to reuse its cache and compiled step.
    """
    single = not messages or isinstance(messages[0], Mapping)
    conversations = [cast(Conversation, messages)] if single else cast(Sequence[Conversation], messages)
    engine = model if isinstance(model, Engine) else Engine(model)
    check_max_new_tokens(max_new_tokens)
    sampling = SamplingParams(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    format_ = find_chat_format(tokenizer, chat_format)
    prompts = []
    for i, conversation in enumerate(conversations):
        where = "the conversation" if single else f"conversation {i}"
        try:
            ids = format_.render_prompt(conversation)
        except ChatError as exc:
            if single:
                raise
            raise ChatError(f"{where}: {exc}") from None
        if len(ids) >= engine.context:
            raise HerdError(
                f"{where} renders to {len(ids)} tokens but the model's context is {engine.context}; "
                "drop its oldest messages"
            )
        prompts.append(ids)
    replies = [
        c.text for c in complete_ids(engine, tokenizer, prompts, max_new_tokens, sampling, stream=stream)
    ]
    return replies[0] if single else replies
