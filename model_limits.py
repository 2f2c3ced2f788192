"""How long an input the encoder takes: the one length cap every command derives from the model, read from the
config as a plain mapping, so that the onnxruntime path (no transformers) uses the same rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Encoders whose position ids start after the padding index (fairseq's convention): RoBERTa with pad id 1 and 514
# positions takes 512 tokens.
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert", "bart", "mbart")
# transformers' stand-in for "no limit" in tokenizer_config.json's `model_max_length`.
UNBOUNDED = 1_000_000


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The most tokens (special tokens included) the encoder's position embeddings allow, or None if unbounded."""
    encoder = config.get("encoder_config")  # kosenttype nests the encoder's config; stock models are their own
    encoder = encoder if isinstance(encoder, Mapping) else config
    positions = encoder.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    offset = (encoder.get("pad_token_id") or 0) + 1 if encoder.get("model_type") in POSITIONS_AFTER_PADDING else 0
    return positions - offset


def model_max_length(config: Mapping[str, Any], tokenizer_limit: int | None = None) -> int:
    """The lower of the positions' limit and the tokenizer's `model_max_length` (UNBOUNDED when neither is known)."""
    limits = [position_limit(config), tokenizer_limit]
    usable = [limit for limit in limits if isinstance(limit, int) and not isinstance(limit, bool)]
    return min([limit for limit in usable if 0 < limit < UNBOUNDED], default=UNBOUNDED)


def capped_max_length(requested: int, config: Mapping[str, Any], tokenizer_limit: int | None = None) -> int:
    """`requested`, lowered to what the model takes: past its positions it would crash at the first long sentence."""
    return min(requested, model_max_length(config, tokenizer_limit))
