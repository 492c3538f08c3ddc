"""The OpenAI API's request and response bodies, validated with pydantic.

Requests follow OpenAI's chat completions and (legacy) completions APIs: the
fields herd acts on are declared with their ranges, fields herd accepts but
does not act on are declared too (``user``; the penalties must stay 0), and
any other field is refused by name, as OpenAI refuses an unrecognised
argument. Types are strict, as OpenAI's are: ``"yes"`` is not a boolean nor
``"5"`` or ``true`` a number. Every size a client controls has a bound
(:class:`Limits`), so that one request cannot take the server's memory or time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask; the server answers 400 (413 for the body) beyond them."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    max_n: int = 8
    max_stop: int = 4
    max_stop_chars: int = 256
    max_messages: int = 256
    max_prompts: int = 16


class StreamOptions(BaseModel):
    """``stream_options``: whether a last chunk carries the usage."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


class _Request(BaseModel):
    """Fields common to both endpoints."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    stop: str | list[str] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: Literal[0] = 0
    presence_penalty: Literal[0] = 0
    user: str | None = None

    def token_limit(self) -> tuple[int | None, str]:
        """The most tokens asked for (None: as many as the context leaves) and the field that asks."""
        return self.max_tokens, "max_tokens"

    def stop_list(self) -> list[str]:
        """``stop`` as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class TextPart(BaseModel):
    """A text part of a message's content given as a list of parts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of a conversation; herd's chat formats take these roles."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, content: object) -> object:
        if not isinstance(content, str | list):
            raise ValueError("must be a string or a list of text parts")
        return content

    def text(self) -> str:
        """The content as one string (parts joined)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    def token_limit(self) -> tuple[int | None, str]:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must come from the user")
        return messages


class CompletionRequest(_Request):
    """``POST /v1/completions`` (one prompt or a list)."""

    prompt: str | list[str]
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: Literal[False] = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _text_or_texts(cls, prompt: object) -> object:
        texts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise ValueError("must be a string or a list of strings (token ids are not accepted)")
        return prompt

    def prompts(self) -> list[str]:
        """``prompt`` as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Usage(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorBody
