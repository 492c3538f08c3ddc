"""Chat formats: a conversation rendered to ids plus a per-token loss mask.

Supervised fine-tuning (Llama 2 §3.1, Llama 3 §4.1) trains only on the
assistant's answers, so every format returns a mask that is 1 on assistant
content and on the token that ends the assistant's turn, 0 elsewhere.

An assistant message may carry ``"weight": 0`` (the convention of OpenAI's
chat fine-tuning format; 1 is the default): that turn, content and
turn-ending token, is context only, with mask 0, and its ids are those it
would have without the key. Ghost Attention (Llama 2 §3.3) needs it: its
dialogues are trained on their last answer alone, "the loss set to 0 for all
the tokens from the previous turns, including assistant messages"
(:mod:`herd.posttrain.gatt`).

* :class:`Llama2Chat`: ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>``
  per turn (docs/spec.md §2); each completed pair is one SentencePiece call framed by
  BOS and EOS, the open turn gets BOS only, as in Meta's reference.
* :class:`Llama3Chat`: ``<|begin_of_text|>`` then per message
  ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>`` (docs/spec.md §2).
* :class:`JinjaChat`: any jinja chat template shipped in a ``tokenizer_config.json``
  or in GGUF metadata (ChatML for SmolLM2), rendered like transformers'
  ``apply_chat_template``.

Message contents are always encoded with ``allow_special=False``: a user who
types ``<|eot_id|>`` or ``</s>`` cannot end a turn (docs/spec.md §2).

How :class:`JinjaChat` finds the contents in the rendered text: the template
is rendered a second time with each content replaced by a unique placeholder
(a private-use character pair with the message index). The text between
placeholders is the template's own text; matching the real rendering against
``literal (.*?) literal (.*?) ...`` recovers exactly where each message's
content landed, even when the template trims it. Template text is encoded
with special tokens allowed, contents without; the mask is 1 on assistant
contents and on the template's first token after each if it is a stop token
(unless the message has ``"weight": 0``). The ``weight`` key never reaches the
template, so it cannot change the text.
Spaces that end a template piece just before a content are encoded with the
content, so ``"[INST] " + "hello"`` gives the same ids as the joined string.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from herd.tokenizer.base import Tokenizer, TokenizerError

#: ``{"role": str, "content": str}``, and on assistant messages an optional ``"weight": 0 | 1``.
Message = Mapping[str, Any]
#: The loss weights a message may carry: 0 (context only) or 1 (trained, the default for the assistant).
WEIGHTS = (0, 1)


class ChatError(TokenizerError):
    """A conversation that a chat format cannot render (bad roles, bad order, bad template)."""


@dataclass
class ChatTokens:
    """A rendered conversation: ``ids`` and a same-length ``loss_mask`` (1 = train on this token)."""

    ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)

    def add(self, ids: Sequence[int], trained: bool) -> None:
        self.ids += ids
        self.loss_mask += [int(trained)] * len(ids)


def is_weight(value: object) -> bool:
    """Whether ``value`` is a loss weight a message may carry: the integer 0 or 1 (not a bool, not a float)."""
    return type(value) is int and value in WEIGHTS


def is_trained(message: Message) -> bool:
    """Whether the loss covers ``message``: an assistant message without ``"weight": 0``."""
    return message["role"] == "assistant" and message.get("weight", 1) == 1


def check_conversation(messages: Sequence[Message], *, prompt: bool, roles: Sequence[str] = ()) -> None:
    """Raise :class:`ChatError` unless ``messages`` is an optional system message then user/assistant turns.

    User-side roles (``user`` and any of ``roles``) and ``assistant`` must
    alternate, starting with a user turn. A generation prompt must end on a
    user-side turn. A ``weight`` must be 0 or 1, on an assistant message.
    """
    user_side = ("user", *roles)
    if not messages:
        raise ChatError("empty conversation: expected at least one user message")
    expected = "user"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ChatError(f"message {i}: expected a mapping with string 'role' and 'content'")
        if not isinstance(message.get("content"), str):
            raise ChatError(f"message {i} ({message['role']}): 'content' must be a string")
        role = message["role"]
        if role not in ("system", "assistant", *user_side):
            raise ChatError(
                f"message {i}: unknown role {role!r} (expected system, {', '.join(user_side)}, assistant)"
            )
        if "weight" in message and role != "assistant":
            raise ChatError(f"message {i} ({role}): 'weight' is only for assistant messages")
        if "weight" in message and not is_weight(message["weight"]):
            raise ChatError(f"message {i} ({role}): 'weight' must be 0 or 1, got {message['weight']!r}")
        if role == "system":
            if i != 0:
                raise ChatError(f"message {i}: a system message may only come first")
            continue
        side = "user" if role in user_side else "assistant"
        if side != expected:
            raise ChatError(f"message {i}: expected a {expected} turn, got {role!r} (turns must alternate)")
        expected = "assistant" if side == "user" else "user"
    if prompt and expected != "assistant":
        raise ChatError("a generation prompt must end with a user message")


class ChatFormat(ABC):
    """Renders conversations for one model family."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @abstractmethod
    def render(self, messages: Sequence[Message]) -> ChatTokens:
        """Ids and loss mask of a whole conversation (for training)."""

    @abstractmethod
    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Ids of a conversation ending on a user turn, followed by the opening of the assistant's turn."""


class Llama2Chat(ChatFormat):
    """Llama 2-Chat's ``[INST]`` format (Llama 2 §3, docs/spec.md §2); contents are stripped as in Meta's reference."""

    B_INST, E_INST = "[INST]", "[/INST]"
    B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"

    def _turns(self, messages: Sequence[Message], prompt: bool) -> list[str]:
        check_conversation(messages, prompt=prompt)
        contents = [m["content"] for m in messages]
        if messages[0]["role"] == "system":
            if len(messages) == 1:
                raise ChatError("a system message must be followed by a user message")
            contents = [self.B_SYS + contents[0] + self.E_SYS + contents[1], *contents[2:]]
        return [c.strip() for c in contents]

    def render(self, messages: Sequence[Message]) -> ChatTokens:
        turns = self._turns(messages, prompt=False)
        trained = [is_trained(m) for m in messages if m["role"] == "assistant"]
        out = ChatTokens()
        encode = self.tokenizer.encode
        for user, answer, train in zip(turns[0::2], turns[1::2], trained, strict=False):
            head = f"{self.B_INST} {user} {self.E_INST}"
            full = encode(f"{head} {answer} ", bos=True, eos=True)
            shared = _common_prefix(encode(head, bos=True), full)
            out.add(full[:shared], False)
            out.add(full[shared:], train)
        if len(turns) % 2:
            out.add(encode(f"{self.B_INST} {turns[-1]} {self.E_INST}", bos=True), False)
        return out

    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        self._turns(messages, prompt=True)
        return self.render(messages).ids


class Llama3Chat(ChatFormat):
    """Llama 3's header-token format (Llama 3 §4.1, docs/spec.md §2); ``ipython`` is the Llama 3.1 tool-result role."""

    ROLES = ("ipython",)

    def _message(self, out: ChatTokens, role: str, content: str | None, trained: bool = False) -> None:
        tok = self.tokenizer
        out.add(
            [tok.special_id("<|start_header_id|>"), *tok.encode(role), tok.special_id("<|end_header_id|>")],
            False,
        )
        out.add(tok.encode("\n\n"), False)
        if content is not None:
            out.add(tok.encode(content.strip()), trained)
            out.add([tok.special_id("<|eot_id|>")], trained)

    def _render(self, messages: Sequence[Message], prompt: bool) -> ChatTokens:
        check_conversation(messages, prompt=prompt, roles=self.ROLES)
        out = ChatTokens()
        out.add([self.tokenizer.special_id("<|begin_of_text|>")], False)
        for message in messages:
            self._message(out, message["role"], message["content"], is_trained(message))
        if prompt:
            self._message(out, "assistant", None)
        return out

    def render(self, messages: Sequence[Message]) -> ChatTokens:
        return self._render(messages, prompt=False)

    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        return self._render(messages, prompt=True).ids


_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
#: A piece of a rendered template: its text, and ``None`` for the template's own text, else whether
#: the loss covers it (the content of a message, :func:`is_trained`).
Piece = tuple[str, bool | None]


def _raise_exception(message: str) -> None:
    raise ChatError(f"chat template: {message}")


class JinjaChat(ChatFormat):
    """A jinja chat template, rendered in a sandbox with transformers' conventions.

    Variables: ``messages``, ``add_generation_prompt``, ``bos_token``,
    ``eos_token``; helpers ``raise_exception`` and ``strftime_now``.
    """

    def __init__(self, tokenizer: Tokenizer, template: str | None = None) -> None:
        super().__init__(tokenizer)
        source = template if template is not None else tokenizer.chat_template
        if not source:
            raise ChatError(f"{tokenizer.source}: the tokenizer has no chat template")
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatError(f"{tokenizer.source}: invalid chat template ({exc})") from None

    def _special_text(self, token_id: int | None) -> str:
        return "" if token_id is None else self.tokenizer.id_to_piece(token_id)

    def render_text(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        """The template's output string (what transformers' ``apply_chat_template(tokenize=False)`` returns)."""
        check_conversation(messages, prompt=add_generation_prompt)
        return self._render_text(messages, add_generation_prompt)

    def _render_text(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        try:
            return self.template.render(
                messages=[{key: value for key, value in m.items() if key != "weight"} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self._special_text(self.tokenizer.bos_id),
                eos_token=self._special_text(self.tokenizer.eos_id),
            )
        except jinja2.TemplateError as exc:
            raise ChatError(f"{self.tokenizer.source}: chat template failed ({exc})") from None

    def _pieces(self, messages: Sequence[Message], add_generation_prompt: bool) -> list[Piece]:
        """The rendering as :data:`Piece` s: template text, and each message's content with whether it is trained."""
        check_conversation(messages, prompt=add_generation_prompt)
        text = self._render_text(messages, add_generation_prompt)
        marked = [dict(m, content=f"\ue000{i}\ue001") for i, m in enumerate(messages)]
        skeleton = _PLACEHOLDER.split(self._render_text(marked, add_generation_prompt))
        literals, owners = skeleton[0::2], [int(i) for i in skeleton[1::2]]
        pattern = "(.*?)".join(map(re.escape, literals))
        match = re.fullmatch(pattern, text, flags=re.DOTALL)
        if match is None:
            raise ChatError(
                f"{self.tokenizer.source}: cannot locate the message contents in the rendered chat template "
                "(the template changes contents beyond trimming them); no loss mask can be computed"
            )
        pieces: list[Piece] = [(literals[0], None)]
        for n, owner in enumerate(owners):
            pieces += [(match.group(n + 1), is_trained(messages[owner])), (literals[n + 1], None)]
        return _move_spaces_into_contents(pieces)

    def _encode_pieces(self, pieces: list[Piece]) -> ChatTokens:
        tok = self.tokenizer
        stops = tok.stop_ids
        out = ChatTokens()
        turn_open = False  # a trained content was just encoded; its end-of-turn token is trained too
        for text, trained in pieces:
            if not text:
                continue
            encode = tok._encode_continuation if out.ids else tok._encode
            ids = encode(text, allow_special=trained is None)
            if trained is None and turn_open and ids and ids[0] in stops:
                out.add(ids[:1], True)
                ids = ids[1:]
            out.add(ids, trained is True)
            turn_open = trained is True
        return out

    def render(self, messages: Sequence[Message]) -> ChatTokens:
        return self._encode_pieces(self._pieces(messages, add_generation_prompt=False))

    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        return self._encode_pieces(self._pieces(messages, add_generation_prompt=True)).ids


def _move_spaces_into_contents(pieces: list[Piece]) -> list[Piece]:
    """Move spaces that end a template piece into the content after it (``"[INST] "`` + ``"hi"``)."""
    out = list(pieces)
    for i in range(len(out) - 1):
        (text, trained), (nxt, nxt_trained) = out[i], out[i + 1]
        if trained is None and nxt_trained is not None and text.endswith(" "):
            kept = text.rstrip(" ")
            out[i], out[i + 1] = (kept, None), (text[len(kept) :] + nxt, nxt_trained)
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def chat_format(tokenizer: Tokenizer, style: str | None = None) -> ChatFormat:
    """The chat format for ``tokenizer``: ``style`` (llama2, llama3, jinja) or detected.

    Detection: the tokenizer's own chat template if it ships one, else Llama 3's
    header tokens if it has them, else Llama 2's ``[INST]`` format.
    """
    if style is None:
        if tokenizer.chat_template:
            style = "jinja"
        elif "<|start_header_id|>" in tokenizer.special_tokens:
            style = "llama3"
        else:
            style = "llama2"
    formats: dict[str, type[ChatFormat]] = {"llama2": Llama2Chat, "llama3": Llama3Chat, "jinja": JinjaChat}
    if style not in formats:
        raise ChatError(f"unknown chat format {style!r} (expected llama2, llama3 or jinja)")
    return formats[style](tokenizer)
