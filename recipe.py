"""The published training recipe, in one place, and the model a run starts from.

`Recipe` holds every default `kosenttype-train` starts from: the settings the published model was trained with (the
model card's "Training procedure"). Each is a `kosenttype-train` argument of the same name, so any of them can be
changed on the command line or in a JSON arguments file; `Recipe.as_arguments()` is what the argument parser is
given as its defaults. The functions below load what training starts from: a tokenizer, and a model that is a fresh
encoder, a saved kosenttype model or a pretrained encoder with a new head, with the length it can take.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from .configuration_kosenttype import DEFAULT_BACKBONE, KoSentTypeConfig
from .errors import KoSentTypeError, one_line
from .model_limits import capped_max_length
from .modeling_kosenttype import KoSentTypeForSequenceClassification

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """The published recipe. Mixed precision is chosen per machine (bf16 on a GPU that has it, else fp16 on CUDA,
    fp32 on CPU) and is not a fixed setting, so it is not listed here."""

    # Where training starts: a pretrained Korean sentence encoder (KLUE RoBERTa-base) with a new linear head.
    model_name_or_path: str = DEFAULT_BACKBONE
    max_seq_length: int = 256
    # The imbalance of the types: class-weighted cross-entropy (n / (k · n_class)) and a sampler drawing every type
    # equally often.
    class_weighting: str = "balanced"
    weighted_sampler: bool = True
    # AdamW with 10% linear warmup, then linear decay; gradients clipped at norm 1.
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    num_train_epochs: float = 8.0
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    # Evaluated and saved every epoch; the best epoch by macro-F1 is restored at the end, and training stops after
    # 2 epochs without a better one. Two checkpoints are kept (the best always is).
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int = 2
    load_best_model_at_end: bool = True
    metric_for_best_model: str = "macro_f1"
    greater_is_better: bool = True
    early_stopping_patience: int = 2
    # No experiment tracker unless asked for (transformers 4.x logs to every installed one by default).
    report_to: str = "none"

    def as_arguments(self) -> dict[str, Any]:
        """The recipe under the argument names of the installed transformers: 4.x takes the warmup share as
        `warmup_ratio`, 5.x as a float `warmup_steps` below 1."""
        from transformers import TrainingArguments

        values = dataclasses.asdict(self)
        if not any(spec.name == "warmup_ratio" for spec in dataclasses.fields(TrainingArguments)):
            values["warmup_steps"] = values.pop("warmup_ratio")
        return values


RECIPE = Recipe()


# ---- The model a run starts from -------------------------------------------------------------------------------------


def check_local_sources(sources: dict[str, str | None]) -> None:
    """`{option: source}`: a local folder that isn't there says so ("not found") before anything else runs, rather
    than failing later with a Hub error about the form of repo ids."""
    for option, source in sources.items():
        if source is not None and _looks_local(source) and not os.path.exists(source):
            raise KoSentTypeError(f"{option} {source}: not found")


def _looks_local(source: str) -> bool:
    """A path rather than a Hub id (`name` or `owner/name`)."""
    return os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1 or "\\" in source


def _from_pretrained(loader: Any, source: str, option: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise KoSentTypeError(f"{option} {source}: cannot be loaded: {one_line(error)}") from None


def load_tokenizer(model_name_or_path: str, tokenizer_name: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of `tokenizer_name`, else of the starting model."""
    option = "--tokenizer_name" if tokenizer_name else "--model_name_or_path"
    return _from_pretrained(AutoTokenizer, tokenizer_name or model_name_or_path, option)


def load_encoder_config(description: str | dict) -> dict:
    """The --encoder_config value: a JSON file, an inline JSON object, or (from a JSON config file) a dict."""
    if isinstance(description, dict):
        return dict(description)
    if os.path.isfile(description):
        return json.loads(Path(description).read_text(encoding="utf-8"))
    try:
        return json.loads(description)
    except json.JSONDecodeError:
        raise KoSentTypeError(f"--encoder_config {description!r:.80} is not a JSON file or a JSON object") from None


def build_model(
    model_name_or_path: str,
    encoder_config: str | dict | None,
    tokenizer: PreTrainedTokenizerBase,
    **config_overrides: Any,
) -> KoSentTypeForSequenceClassification:
    """A fresh encoder from `encoder_config`; else a saved kosenttype model to train further, or a pretrained
    encoder with a new head. `config_overrides` (labels, pooling, …) apply to the config; None values are left."""
    overrides = {key: value for key, value in config_overrides.items() if value is not None}
    if encoder_config is not None:
        config = KoSentTypeConfig(encoder_config=load_encoder_config(encoder_config), backbone_name=None, **overrides)
        model = KoSentTypeForSequenceClassification(config)
    else:
        option = "--model_name_or_path"
        if _from_pretrained(AutoConfig, model_name_or_path, option).model_type == KoSentTypeConfig.model_type:
            model = _from_pretrained(AutoModelForSequenceClassification, model_name_or_path, option, **overrides)
        else:
            model = KoSentTypeForSequenceClassification.from_backbone(model_name_or_path, **overrides)
    # Set on the loaded config, not passed to from_pretrained: a config.json without the key (the converter's,
    # under transformers 5.x) would hand it on to the model's __init__, which takes no such argument.
    model.config.pad_token_id = tokenizer.pad_token_id
    vocab_size = model.config.encoder_config.vocab_size
    if len(tokenizer) > vocab_size:
        raise KoSentTypeError(
            f"the tokenizer has {len(tokenizer)} tokens but the encoder's vocabulary only {vocab_size}"
        )
    return model


def model_max_length(requested: int, model: KoSentTypeForSequenceClassification) -> int:
    """`--max_seq_length`, capped at what the encoder's position embeddings take (past it, training would stop
    with an IndexError at the first long batch)."""
    length = capped_max_length(requested, model.config.to_dict())
    if length < requested:
        logger.warning(f"--max_seq_length {requested} is more than the encoder takes; sentences are cut at {length}.")
    return length
