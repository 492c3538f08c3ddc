"""Per-message loss weights (``"weight": 0`` on an assistant message), token by token in every chat format.

A weight-0 turn is context: its content and its turn-ending token get mask 0,
and the ids are exactly those of the conversation without the key. Llama 2's
``[INST]`` format runs on the tiny SentencePiece model of tests/tokenizer/conftest.py,
Llama 3's on Meta's tiktoken tokenizer, ChatML on SmolLM2's vocabulary and template.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.tokenizer import TiktokenTokenizer, Tokenizer, load_tokenizer
from herd.tokenizer.chat import ChatError, ChatFormat, JinjaChat, Llama2Chat, Llama3Chat

SYSTEM = {"role": "system", "content": "Always answer in French."}
FIRST = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "Quatre."}]
SECOND = [{"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "Six, café 🙂"}]


def weighted(weight: int) -> list[dict]:
    """System, first turn with its answer at ``weight``, second turn trained."""
    return [SYSTEM, FIRST[0], {**FIRST[1], "weight": weight}, *SECOND]


@pytest.fixture(scope="module")
def smollm(smollm2_gguf: Path) -> Tokenizer:
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module")
def formats(llama2: Tokenizer, llama3: TiktokenTokenizer, smollm: Tokenizer) -> dict[str, ChatFormat]:
    return {"llama2": Llama2Chat(llama2), "llama3": Llama3Chat(llama3), "chatml": JinjaChat(smollm)}


def trained(fmt: ChatFormat, messages: list[dict]) -> list[int]:
    rendered = fmt.render(messages)
    assert len(rendered.ids) == len(rendered.loss_mask)
    return [i for i, m in zip(rendered.ids, rendered.loss_mask, strict=True) if m]


def test_llama2_weight_zero_token_by_token(llama2: Tokenizer) -> None:
    chat = Llama2Chat(llama2)
    sp = llama2.processor  # type: ignore[attr-defined]
    head1 = "[INST] <<SYS>>\nAlways answer in French.\n<</SYS>>\n\nWhat is 2 + 2? [/INST]"
    head2 = "[INST] And 3 + 3? [/INST]"
    turn1 = [1, *sp.encode(head1 + " Quatre. "), 2]
    turn2 = [1, *sp.encode(head2 + " Six, café 🙂 "), 2]
    answer2 = len(sp.encode(head2)) + 1  # BOS, then the head's pieces
    rendered = chat.render(weighted(0))
    assert rendered.ids == turn1 + turn2 == chat.render(weighted(1)).ids
    assert rendered.loss_mask == [0] * len(turn1) + [0] * answer2 + [1] * (len(turn2) - answer2)


def test_llama3_weight_zero_token_by_token(llama3: TiktokenTokenizer) -> None:
    chat = Llama3Chat(llama3)
    enc = llama3.encode
    start, end, eot = 128006, 128007, 128009

    def header(role: str) -> list[int]:
        return [start, *enc(role), end, *enc("\n\n")]

    ids = [
        128000, *header("system"), *enc("Always answer in French."), eot,
        *header("user"), *enc("What is 2 + 2?"), eot,
        *header("assistant"), *enc("Quatre."), eot,
        *header("user"), *enc("And 3 + 3?"), eot,
        *header("assistant"), *enc("Six, café 🙂"), eot,
    ]  # fmt: skip
    answer = [*enc("Six, café 🙂"), eot]
    rendered = chat.render(weighted(0))
    assert rendered.ids == ids
    assert rendered.loss_mask == [0] * (len(ids) - len(answer)) + [1] * len(answer)
    assert trained(chat, weighted(1)) == [*enc("Quatre."), eot, *answer]


def test_chatml_weight_zero_token_by_token(smollm: Tokenizer) -> None:
    chat = JinjaChat(smollm)
    text = (
        "<|im_start|>system\nAlways answer in French.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\nQuatre.<|im_end|>\n"
        "<|im_start|>user\nAnd 3 + 3?<|im_end|>\n"
        "<|im_start|>assistant\nSix, café 🙂<|im_end|>\n"
    )
    assert chat.render_text(weighted(0)) == text
    rendered = chat.render(weighted(0))
    assert smollm.decode(rendered.ids) == text
    assert rendered.ids == chat.render(weighted(1)).ids
    answer = [*smollm.encode("Six, café 🙂"), smollm.special_id("<|im_end|>")]
    tail = smollm.encode("\n")  # the template's newline after <|im_end|>, never trained
    assert rendered.loss_mask == [0] * (len(rendered.ids) - len(answer) - len(tail)) + [1] * len(answer) + [
        0
    ] * len(tail)
    assert smollm.decode(trained(chat, weighted(1))) == "Quatre.<|im_end|>Six, café 🙂<|im_end|>"


@pytest.mark.parametrize("name", ["llama2", "llama3", "chatml"])
def test_weights_keep_ids_and_mask_only_their_turn(formats: dict[str, ChatFormat], name: str) -> None:
    fmt = formats[name]
    plain = fmt.render([SYSTEM, *FIRST, *SECOND])
    assert fmt.render(weighted(1)) == plain  # an explicit 1 is the default
    zero = fmt.render(weighted(0))
    assert zero.ids == plain.ids
    # the plain mask has two runs of 1s, one per answer; weight 0 clears the first and keeps the second
    first_end = plain.loss_mask.index(0, plain.loss_mask.index(1))
    assert zero.loss_mask == [0] * first_end + plain.loss_mask[first_end:]
    everything_zero = [SYSTEM, FIRST[0], {**FIRST[1], "weight": 0}, SECOND[0], {**SECOND[1], "weight": 0}]
    untrained = fmt.render(everything_zero)
    assert untrained.ids == plain.ids and set(untrained.loss_mask) == {0}
    prompt = [SYSTEM, FIRST[0], {**FIRST[1], "weight": 0}, SECOND[0]]
    assert fmt.render_prompt(prompt) == fmt.render_prompt([SYSTEM, *FIRST, SECOND[0]])


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({**FIRST[1], "weight": 2}, "'weight' must be 0 or 1, got 2"),
        ({**FIRST[1], "weight": 0.0}, "'weight' must be 0 or 1, got 0.0"),
        ({**FIRST[1], "weight": True}, "'weight' must be 0 or 1, got True"),
        ({**FIRST[1], "weight": "0"}, "'weight' must be 0 or 1, got '0'"),
        ({**FIRST[1], "weight": None}, "'weight' must be 0 or 1, got None"),
    ],
)
def test_bad_weights_are_refused(formats: dict[str, ChatFormat], message: dict, match: str) -> None:
    for fmt in formats.values():
        with pytest.raises(ChatError, match=f"message 2 \\(assistant\\): {match}"):
            fmt.render([SYSTEM, FIRST[0], message])


@pytest.mark.parametrize("where", [0, 1])
def test_weight_only_on_assistant_messages(formats: dict[str, ChatFormat], where: int) -> None:
    messages = [SYSTEM, *FIRST]
    messages[where] = {**messages[where], "weight": 1}
    role = messages[where]["role"]
    for fmt in formats.values():
        with pytest.raises(ChatError, match=f"message {where} \\({role}\\): 'weight' is only for assistant"):
            fmt.render(messages)
