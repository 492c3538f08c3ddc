"""The reward model: a chat model whose next-token head is replaced by a scalar head (Llama 2 §3.2.2).

Llama 2 initialises each reward model from a chat-model checkpoint and swaps
the output projection for a regression head that outputs one score for a
prompt and answer (docs/spec.md §5.2); Llama 3 starts from the pretrained
checkpoint instead (§4.1.2, docs/spec.md §5.6). :class:`RewardModel` holds a herd
:class:`~herd.model.transformer.Transformer` without its vocabulary-sized output
projection (a tied one is the embedding, which stays) and ``score``, a
bias-free ``Linear(dim, 1)``, applied to the final-norm hidden state of one
token per sequence.

**Which token.** A right-padded batch is scored at the last real token of each
row, found as transformers finds it for ``LlamaForSequenceClassification``
(:func:`last_real_index`: the rightmost token that is not the pad id), so a
reward model saved with :meth:`RewardModel.save_pretrained` gives the same
scores in both (:mod:`herd.checkpoint.sequence_classification`). Packed rows,
several documents per row with ``document_ids`` (a prompt's ranked answers,
each packed with the prompt), are scored at explicit positions, each document
once in one forward pass.

**The head's initialisation.** ``score.weight`` ~ N(0, (1/dim)²). On hidden
states of unit RMS (what the final RMSNorm produces at its initial gain) a
score then has standard deviation 1/√dim, about 0.016 for dim 4096: the
untrained model prefers neither answer of a pair (the pairwise loss starts at
log 2), yet the head is not zero, so the decoder gets a gradient from the
first step. The papers do not give their initialisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from herd.checkpoint.base import CheckpointInfo
from herd.checkpoint.hf import DEFAULT_MAX_SHARD_BYTES
from herd.checkpoint.load import open_checkpoint
from herd.checkpoint.sequence_classification import (
    SCORE,
    SequenceClassificationReader,
    reward_tensor_names,
    write_sequence_classification,
)
from herd.errors import CheckpointError, ConfigError, InputError
from herd.model.build import parse_dtype
from herd.model.config import ModelConfig
from herd.model.transformer import Transformer
from herd.tokenizer.base import Tokenizer


def last_real_index(tokens: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """Per row of ``tokens`` (batch, seq), the index of the rightmost token that is not ``pad_id``.

    transformers' rule for ``LlamaForSequenceClassification``; without a pad id,
    the last column. A row of nothing but padding gives 0, as in transformers.
    """
    batch, seq = tokens.shape
    if pad_id is None:
        return torch.full((batch,), seq - 1, dtype=torch.long, device=tokens.device)
    columns = torch.arange(seq, device=tokens.device)
    return (columns * (tokens != pad_id)).argmax(-1)


class RewardModel(nn.Module):
    """A Llama decoder with a scalar head: token ids in, one score per sequence (or per packed document) out.

    Build one with :meth:`random`, :meth:`from_pretrained_lm` (a language-model
    checkpoint of any format herd reads, or a live model) or
    :meth:`from_pretrained` (a reward model saved by :meth:`save_pretrained` or
    by transformers). ``pad_id`` is the token that pads right-padded batches;
    it must never be the last real token of a scored sequence (see
    :mod:`herd.checkpoint.sequence_classification`).
    """

    def __init__(
        self, config: ModelConfig, *, pad_id: int | None = None, device: str | torch.device = "cpu"
    ) -> None:
        """A reward model of ``config``, weights uninitialised on ``device`` (``"meta"``: none allocated)."""
        super().__init__()
        with torch.device("meta"):
            self.transformer = Transformer(config)
            self.score = nn.Linear(config.dim, 1, bias=False)
        del self.transformer.output  # the vocabulary head; a tied one was the embedding, which stays
        self.config = config
        self.pad_id = pad_id
        if torch.device(device).type != "meta":
            self.to_empty(device=device)
            self.transformer.reset_rope(device)

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        config: ModelConfig,
        *,
        seed: int = 0,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device = "cpu",
        pad_id: int | None = None,
    ) -> RewardModel:
        """A random reward model: the decoder as pretraining starts it, the head as the module says."""
        model = cls(config, pad_id=pad_id, device=device)
        model.transformer.init_weights(seed=seed)
        with torch.no_grad():
            model.score.weight.copy_(initial_score(config, seed))
        return model.to(parse_dtype(dtype)) if dtype is not None else model

    @classmethod
    def from_pretrained_lm(
        cls,
        path_or_model: Path | str | Transformer,
        *,
        seed: int = 0,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device = "cpu",
        pad_id: int | None = None,
    ) -> RewardModel:
        """A reward model from a language model, its head replaced by a new scalar head (Llama 2 §3.2.2).

        ``path_or_model``: a checkpoint of any format herd reads (its output
        projection is never read), or a live :class:`Transformer`, whose
        weights are copied (the model itself is left as it was). ``dtype``
        None keeps the source's. The head is drawn from ``seed``.
        """
        if isinstance(path_or_model, Transformer):
            params = dict(path_or_model.named_parameters(remove_duplicate=False))
            tensors = ((name, params[name].detach()) for name in decoder_names(path_or_model.config))
            return cls._assemble(path_or_model.config, tensors, seed, dtype, device, pad_id, "the model")
        with open_checkpoint(path_or_model) as reader:
            tensors = ((name, reader.get(name)) for name in decoder_names(reader.config))
            return cls._assemble(reader.config, tensors, seed, dtype, device, pad_id, path_or_model)

    @classmethod
    def from_pretrained(
        cls,
        path: Path | str,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device = "cpu",
    ) -> RewardModel:
        """A ``LlamaForSequenceClassification`` reward model (saved by herd or transformers), with its pad id."""
        with SequenceClassificationReader(path) as reader:
            pad_id = reader.pad_token_id
            return cls._assemble(reader.config, reader.tensors(), None, dtype, device, pad_id, path)

    @classmethod
    def _assemble(
        cls,
        config: ModelConfig,
        tensors: Iterable[tuple[str, torch.Tensor]],
        seed: int | None,
        dtype: torch.dtype | str | None,
        device: str | torch.device,
        pad_id: int | None,
        source: Path | str,
    ) -> RewardModel:
        """A reward model holding ``tensors`` (canonical names), plus a new head drawn from ``seed`` if given.

        Each tensor is copied to ``device`` and ``dtype`` (default: its own;
        fp32 for a non-floating one) as it arrives and assigned, never loaded
        into a second, initialised model; the sources are left untouched.
        """
        target = parse_dtype(dtype)
        model = cls(config, pad_id=pad_id, device="meta")
        state: dict[str, torch.Tensor] = {}
        for name, tensor in tensors:
            own = tensor.dtype if tensor.is_floating_point() else torch.float32
            tensor = tensor.to(device=device, dtype=target or own, copy=True)
            state[name if name == SCORE else f"transformer.{name}"] = tensor
        if seed is not None:
            first = state["transformer.tok_embeddings.weight"]
            state[SCORE] = initial_score(config, seed).to(device=device, dtype=first.dtype)
        dtypes = {tensor.dtype for tensor in state.values()}
        if len(dtypes) > 1:
            raise CheckpointError(
                f"{source}: tensors of several dtypes ({', '.join(sorted(map(str, dtypes)))}); pass a dtype"
            )
        model.load_state_dict(state, strict=True, assign=True)
        model.transformer.reset_rope(device)
        return model

    # ---- use -------------------------------------------------------------------------------------

    def forward(
        self,
        tokens: torch.Tensor,
        last_index: torch.Tensor | None = None,
        *,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores of ``tokens`` (batch, seq): one per row, or one per entry of ``last_index``.

        - Without ``last_index``: a right-padded batch, each row scored at its
          last real token (:func:`last_real_index` with :attr:`pad_id`); shape (batch,).
        - ``last_index`` (batch,) or (batch, k): the positions to score (``lengths - 1``
          for a right-padded batch; each document's last token in a packed row);
          the scores have its shape.
        - ``document_ids`` (batch, seq): packed rows; each document attends only
          to itself and its positions restart (Llama 3 §3.2), so a document scores
          as it would alone. Needs ``last_index``.
        """
        if tokens.ndim != 2:
            raise InputError(
                f"reward model input: tokens must be (batch, seq), got shape {tuple(tokens.shape)}"
            )
        batch, seq = tokens.shape
        if last_index is None:
            if document_ids is not None:
                raise InputError("reward model input: packed rows (document_ids) need last_index")
            last_index = last_real_index(tokens, self.pad_id)
        if last_index.ndim not in (1, 2) or last_index.shape[0] != batch:
            raise InputError(
                f"reward model input: last_index must be (batch,) or (batch, k) with batch {batch}, "
                f"got shape {tuple(last_index.shape)}"
            )
        index = last_index.to(tokens.device).long().reshape(batch, -1)
        if index.numel() and (index.min() < 0 or index.max() >= seq):
            raise InputError(f"reward model input: last_index holds positions outside 0..{seq - 1}")
        hidden = self.transformer.hidden_states(tokens, document_ids=document_ids)
        picked = hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.score(picked).reshape(last_index.shape)

    def token_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """The head read at every position of ``tokens`` (batch, seq): scores of shape (batch, seq).

        PPO's value model (Llama 2 §3.2.3) is initialised from a reward model
        and predicts, at each position, the return of the response from there
        (:func:`herd.posttrain.rollout.response_values`); one causal forward
        gives every prefix's score.
        """
        return self.score(self.transformer.hidden_states(tokens)).squeeze(-1)

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The canonical (name, tensor) pairs, in checkpoint order (:func:`reward_tensor_names`)."""
        params = dict(self.transformer.named_parameters())
        return [
            (name, (self.score.weight if name == SCORE else params[name]).detach())
            for name in reward_tensor_names(self.config)
        ]

    def save_pretrained(
        self,
        dst: Path | str,
        *,
        tokenizer: Tokenizer | None = None,
        dtype: torch.dtype | str | None = None,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    ) -> Path:
        """Write this model, with its pad id, as a ``LlamaForSequenceClassification`` directory
        (transformers loads it).

        ``tokenizer`` is saved beside the weights when given. A model without a
        pad id is refused: transformers could not find the last real token of a
        padded batch.
        """
        if self.pad_id is None:
            raise ConfigError(
                f"{dst}: the reward model has no pad_id; set one (a token that never ends a scored sequence)"
            )
        return write_sequence_classification(
            dst,
            CheckpointInfo(self.config),
            self.tensors(),
            pad_token_id=self.pad_id,
            tokenizer=tokenizer,
            dtype=parse_dtype(dtype),
            max_shard_bytes=max_shard_bytes,
        )


def decoder_names(config: ModelConfig) -> list[str]:
    """The canonical names of a reward model's decoder tensors (all but the score head)."""
    return [name for name in reward_tensor_names(config) if name != SCORE]


def initial_score(config: ModelConfig, seed: int) -> torch.Tensor:
    """A new head's (1, dim) fp32 weight, N(0, (1/dim)²), drawn from ``seed`` (see the module)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(1, config.dim, generator=generator) / config.dim
