"""Ragged decoding: rows of one batch at different lengths, each at its own cache column and position."""

from __future__ import annotations

import pytest
import torch

from herd.errors import HerdError
from herd.model.build import build_model
from herd.model.presets import get_preset


@pytest.mark.parametrize("preset", ["llama2-tiny", "llama3-tiny", "llama2-tiny-gqa"])
def test_ragged_steps_give_each_row_the_logits_of_its_own_sequence(preset: str) -> None:
    """Prompts of 6, 2 and 4 tokens prefilled into rows 0..2 (one-row views of one cache), then three
    ragged steps: each row's logits equal a full forward over that row's sequence alone."""
    model = build_model(get_preset(preset), seed=0).eval()
    sequences = [[1, 5, 9, 13, 2, 7], [1, 4], [1, 8, 8, 3]]
    with torch.inference_mode():
        cache = model.make_cache(3, 16)
        for row, ids in enumerate(sequences):
            model.hidden_states(torch.tensor([ids]), cache=cache.rows(row))
        for step in range(3):
            new = [10 + step, 20 + step, 30 + step]
            columns = torch.tensor([len(s) for s in sequences])
            logits = model(torch.tensor(new).unsqueeze(1), start_pos=columns, cache=cache)[:, -1]
            for row, token in enumerate(new):
                sequences[row].append(token)
                alone = model(torch.tensor([sequences[row]]))[0, -1]
                torch.testing.assert_close(logits[row], alone, rtol=1e-5, atol=1e-5)


def test_cache_rows_copy_and_ragged_decoding_takes_one_token_per_row() -> None:
    model = build_model(get_preset("llama2-tiny"), seed=0).eval()
    cache = model.make_cache(2, 8)
    with torch.inference_mode():
        model.hidden_states(torch.tensor([[1, 2, 3]]), cache=cache.rows(0))
        cache.copy_row(0, 1, 3)
        for layer in cache.layers:
            assert torch.equal(layer.k[1, :, :3], layer.k[0, :, :3]) and not layer.k[1, :, 3:].any()
        with pytest.raises(HerdError, match="one token per row"):
            model(torch.tensor([[4, 5], [6, 7]]), start_pos=torch.tensor([3, 3]), cache=cache)
