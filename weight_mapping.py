"""A checkpoint's tensors onto `KoSentTypeForSequenceClassification`: the encoder and the head found by structure,
whatever the training module called them, every tensor accounted for, assigned without copying.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint_loading import WORD_EMBEDDINGS, word_embedding_keys
from .configuration_kosenttype import KoSentTypeConfig
from .errors import KoSentTypeError
from .modeling_kosenttype import KoSentTypeForSequenceClassification

TARGET_ENCODER = "kosenttype.encoder."
# Encoder tensors the classifier does not use: its pooler (the head pools itself) and index buffers that older
# transformers saved with the weights but that every version rebuilds.
UNUSED_ENCODER_TENSORS = re.compile(r"^pooler\.|^embeddings\.(position_ids|token_type_ids)$")


@dataclass
class SourceLayout:
    """Where the training module put the encoder and which tensors are the head."""

    encoder_prefix: str
    encoder: dict[str, torch.Tensor]
    head_prefix: str
    head_weight: torch.Tensor
    head_bias: torch.Tensor

    @property
    def num_labels(self) -> int:
        return self.head_weight.shape[0]

    @property
    def vocabulary_rows(self) -> int:
        return self.encoder[WORD_EMBEDDINGS].shape[0]


@dataclass
class MappedWeights:
    """The target state dict, which source key became which target key, and what was left out on purpose."""

    layout: SourceLayout
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    casts: list[str] = field(default_factory=list)

    def summary(self, verbose: bool = False) -> list[str]:
        layout = self.layout
        encoder_count = sum(1 for _, target in self.pairs if target.startswith(TARGET_ENCODER))
        lines = [
            f"mapped {len(self.pairs)} tensors: '{layout.encoder_prefix}*' → '{TARGET_ENCODER}*' ({encoder_count}), "
            f"'{layout.head_prefix}weight/bias' → 'classifier.weight/bias' {list(layout.head_weight.shape)}"
        ]
        lines += [f"  {source} → {target}" for source, target in self.pairs] if verbose else []
        lines.append(f"dropped on purpose (unused by the classifier): {', '.join(self.dropped) or 'nothing'}")
        lines += [f"cast to float32 from: {', '.join(self.casts)}"] if self.casts else []
        return lines


def find_source_layout(state_dict: dict[str, torch.Tensor], checkpoint: Path) -> SourceLayout:
    """The encoder is whatever sits under the prefix of its word embeddings; the head is the one [labels, hidden]
    weight with its bias outside it. Anything else outside the encoder means another architecture."""
    embedding_keys = word_embedding_keys(state_dict)
    if len(embedding_keys) != 1:
        found = ", ".join(embedding_keys) or "none"
        raise KoSentTypeError(f"{checkpoint}: expected one encoder '*{WORD_EMBEDDINGS}', found {found}")
    encoder_prefix = embedding_keys[0].removesuffix(WORD_EMBEDDINGS)
    hidden = state_dict[embedding_keys[0]].shape[1]
    encoder = {k.removeprefix(encoder_prefix): t for k, t in state_dict.items() if _in_encoder(k, encoder_prefix)}
    outside = {key: tensor for key, tensor in state_dict.items() if not _in_encoder(key, encoder_prefix)}
    heads = [
        key.removesuffix("weight")
        for key, tensor in outside.items()
        if key.endswith(".weight")
        and tensor.ndim == 2
        and tensor.shape[1] == hidden
        and getattr(outside.get(key.removesuffix("weight") + "bias"), "shape", None) == tensor.shape[:1]
    ]
    if len(heads) != 1 or len(outside) != 2:
        raise KoSentTypeError(
            f"{checkpoint}: expected exactly one linear head [num_labels, {hidden}] + bias beside the encoder "
            f"'{encoder_prefix}*', found: {describe_tensors(outside) or 'nothing'}"
        )
    return SourceLayout(encoder_prefix, encoder, heads[0], outside[heads[0] + "weight"], outside[heads[0] + "bias"])


def _in_encoder(key: str, encoder_prefix: str) -> bool:
    """Under the encoder's prefix; a module that subclassed the encoder has none, and then its top-level modules
    (BERT's family: embeddings, encoder, pooler) tell the encoder from the head."""
    if encoder_prefix:
        return key.startswith(encoder_prefix)
    return key.split(".", 1)[0] in ("embeddings", "encoder", "pooler")


def describe_tensors(tensors: Mapping[str, torch.Tensor], limit: int = 12) -> str:
    items = [f"{key} {list(tensor.shape)}" for key, tensor in tensors.items()]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def build_model(
    config: KoSentTypeConfig, layout: SourceLayout
) -> tuple[KoSentTypeForSequenceClassification, MappedWeights]:
    """The classifier holding the checkpoint's tensors, assigned into a meta-device model without copies (non-float32
    floats cast, so that transformers 4.57 and 5.x load the folder alike), in eval mode; and how they were mapped."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = KoSentTypeForSequenceClassification(config)
    # Source encoder keys onto the target encoder's, the head onto `classifier`; anything left over is an error.
    target = model.state_dict()
    target_encoder = {key.removeprefix(TARGET_ENCODER): key for key in target if key.startswith("kosenttype.")}
    weights, unexpected = MappedWeights(layout), {}
    for key, tensor in layout.encoder.items():
        if key in target_encoder:
            weights.state_dict[target_encoder[key]] = tensor
            weights.pairs.append((layout.encoder_prefix + key, target_encoder[key]))
        elif UNUSED_ENCODER_TENSORS.search(key):
            weights.dropped.append(f"{layout.encoder_prefix}{key} {list(tensor.shape)}")
        else:
            unexpected[layout.encoder_prefix + key] = tensor
    for suffix, tensor in (("weight", layout.head_weight), ("bias", layout.head_bias)):
        weights.state_dict[f"classifier.{suffix}"] = tensor
        weights.pairs.append((layout.head_prefix + suffix, f"classifier.{suffix}"))
    missing = {key: tensor for key, tensor in target.items() if key not in weights.state_dict}
    mismatched = [
        f"{key} checkpoint {list(tensor.shape)} vs model {list(target[key].shape)}"
        for key, tensor in weights.state_dict.items()
        if tuple(tensor.shape) != tuple(target[key].shape)
    ]
    problems = [
        f"missing from the checkpoint: {describe_tensors(missing)}" if missing else "",
        f"unexpected in the checkpoint: {describe_tensors(unexpected)}" if unexpected else "",
        f"shape mismatch: {', '.join(mismatched[:12])}" if mismatched else "",
    ]
    if any(problems):
        raise KoSentTypeError("the checkpoint does not fit the architecture; " + "; ".join(filter(None, problems)))
    state_dict = weights.state_dict
    weights.casts = sorted({str(t.dtype) for t in state_dict.values() if t.is_floating_point()} - {"torch.float32"})
    model.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in state_dict.items()}, assign=True)
    return model.eval(), weights
