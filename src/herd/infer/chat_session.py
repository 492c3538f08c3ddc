"""A multi-turn conversation with a chat model, in the model's own chat format.

Each turn renders the whole conversation with :func:`herd.tokenizer.chat.chat_format`
(Llama 2 ``[INST]``, Llama 3 headers, or the tokenizer's jinja template such as
SmolLM2's ChatML) and generates the assistant's reply. When the conversation
no longer fits the context window with room for a reply, the oldest
user/assistant exchanges are dropped (the system message stays). The engine's
KV cache keeps the previous turns, so only the new tokens are prefilled.
"""

from __future__ import annotations

from collections.abc import Callable

from herd.errors import HerdError
from herd.infer.completion import Completion, complete_ids
from herd.infer.engine import Engine
from herd.infer.sampling import SamplingParams
from herd.tokenizer.base import Tokenizer
from herd.tokenizer.chat import chat_format

Message = dict[str, str]


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
        self.format = chat_format(tokenizer, style)
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
