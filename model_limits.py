"""How long an input the encoder can take: the one length cap every command derives from the model.

Read from the config as a plain mapping, so the onnxruntime path (which has no transformers) uses the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Encoders whose position ids start after the padding index (fairseq's convention): RoBERTa with pad id 1 and 514
# positions takes 512 tokens.
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert", "bart", "mbart")
# transformers' stand-in for "no limit" in tokenizer_config.json's `model_max_length`.
UNBOUNDED = 1_000_000


def encoder_description(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The encoder's part of a config: kosenttype nests it under `encoder_config`; stock models are their own."""
    nested = config.get("encoder_config")
    return nested if isinstance(nested, Mapping) else config


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The most tokens (special tokens included) the encoder's position embeddings allow, or None if unbounded."""
    encoder = encoder_description(config)
    positions = encoder.get("max_position_embeddings")
    if not isinstance(positions, int):
        return None
    offset = (encoder.get("pad_token_id") or 0) + 1 if encoder.get("model_type") in POSITIONS_AFTER_PADDING else 0
    return positions - offset


def model_max_length(config: Mapping[str, Any], tokenizer_limit: int | None = None) -> int:
    """The most tokens the model takes: its positions' limit or the tokenizer's `model_max_length`, the lower one
    (UNBOUNDED when neither is known)."""
    limits = [position_limit(config), tokenizer_limit]
    return min([limit for limit in limits if isinstance(limit, int) and 0 < limit < UNBOUNDED], default=UNBOUNDED)


def capped_max_length(requested: int, config: Mapping[str, Any], tokenizer_limit: int | None = None) -> int:
    """`requested`, lowered to what the model takes (`model_max_length`).

    Past the positions the model would crash mid-run (an IndexError at the first long sentence); capping at the
    start keeps every sentence classifiable, truncated as the model was trained.
    """
    return min(requested, model_max_length(config, tokenizer_limit))
