"""herd.posttrain.program_reward: each scorer against hand-computed values, and the parser's one-line errors."""

from __future__ import annotations

import pytest

from herd.errors import ConfigError
from herd.posttrain.program_reward import RequiredWord, TargetLength, parse_program_reward

PROMPT = ({"role": "user", "content": "Say please."},)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("one two three four", 1.0),  # on target
        ("", 0.0),  # 4 words short: 1 − 4/4
        ("one two", 0.5),  # 1 − 2/4
        ("a  b\nc\td e", 0.75),  # 5 words, any whitespace: 1 − 1/4
        ("w " * 10, -0.5),  # 10 words: 1 − 6/4
    ],
)
def test_target_length_falls_by_a_quarter_per_word_from_four(response: str, expected: float) -> None:
    assert TargetLength(words=4)(PROMPT, response) == pytest.approx(expected)


def test_target_length_defaults_to_twenty_words() -> None:
    assert TargetLength()(PROMPT, "w " * 20) == 1.0
    assert TargetLength()(PROMPT, "w " * 15) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Please pass the salt.", 1.0),
        ("pass it, PLEASE!", 1.0),  # any case, punctuation around it
        ("(please)", 1.0),
        ("The salt, pleased?", -1.0),  # a longer word is not the word
        ("displease", -1.0),
        ("", -1.0),
    ],
)
def test_required_word_is_plus_one_for_the_whole_word_in_any_case(response: str, expected: float) -> None:
    assert RequiredWord(word="please")(PROMPT, response) == expected


def test_the_parser_builds_each_kind() -> None:
    assert parse_program_reward("length:20") == TargetLength(words=20)
    assert parse_program_reward("word:please") == RequiredWord(word="please")
    assert parse_program_reward(" length : 7") == TargetLength(words=7)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "lenght:20",
            "reward_program: unknown kind 'lenght' in 'lenght:20' (expected length, word as KIND:ARGUMENT); "
            "did you mean 'length'?",
        ),
        ("rm", "reward_program: unknown kind 'rm' in 'rm' (expected length, word as KIND:ARGUMENT)"),
        ("length", "reward_program: 'length' needs an argument (length:ARGUMENT)"),
        ("length:twenty", "reward_program: length:N needs N, a positive number of words, got 'twenty'"),
        ("length:0", "reward_program: length needs a target of at least 1 word, got 0"),
        ("length:-3", "reward_program: length:N needs N, a positive number of words, got '-3'"),
        ("word:", "reward_program: word:W needs W, one word without spaces, got ''"),
        ("word:thank you", "reward_program: word:W needs W, one word without spaces, got 'thank you'"),
    ],
)
def test_the_parser_refuses_bad_specs_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_program_reward(spec)
    assert str(raised.value) == message
