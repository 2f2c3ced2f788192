"""The published training recipe (each field the default of the `kosenttype-train` argument of that name), and the
model a run starts from."""

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
from .model_location import looks_like_path
from .modeling_kosenttype import KoSentTypeForSequenceClassification

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """The published recipe. Mixed precision is chosen per machine (`auto_mixed_precision`), so it is not here."""

    # Where training starts: a pretrained Korean sentence encoder with a new linear head.
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
        """The recipe under the installed transformers' names: 5.x takes the warmup share as `warmup_steps` < 1."""
        from transformers import TrainingArguments

        values = dataclasses.asdict(self)
        if not any(spec.name == "warmup_ratio" for spec in dataclasses.fields(TrainingArguments)):
            values["warmup_steps"] = values.pop("warmup_ratio")
        return values


RECIPE = Recipe()


def check_local_sources(model_name_or_path: str, tokenizer_name: str | None, encoder_config: Any) -> None:
    """A local folder the run will load that isn't there says so ("not found") before anything else runs, rather
    than failing later with a Hub error about the form of repo ids."""
    sources = {"--tokenizer_name": tokenizer_name}
    if encoder_config is None or tokenizer_name is None:
        sources["--model_name_or_path"] = model_name_or_path
    for option, source in sources.items():
        if source is None or os.path.exists(source):
            continue
        if looks_like_path(source):
            raise KoSentTypeError(f"{option} {source}: not found")  # a path, not a Hub id (`name`, `owner/name`)


def _from_pretrained(loader: Any, source: str, option: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise KoSentTypeError(f"{option} {source}: cannot be loaded: {one_line(error)}") from None


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


def starting_model(
    model_name_or_path: str,
    tokenizer_name: str | None,
    encoder_config: str | dict | None,
    max_seq_length: int,
    **config_overrides: Any,
) -> tuple[KoSentTypeForSequenceClassification, PreTrainedTokenizerBase]:
    """(model, tokenizer): a fresh encoder from `encoder_config`, else a saved kosenttype model to train further or
    a pretrained encoder with a new head; the tokenizer of `tokenizer_name`, else of the model. `config_overrides`
    (labels, pooling, …) apply to the config unless None; the tokenizer's `model_max_length` becomes
    `max_seq_length`, capped at what the encoder's positions take."""
    option = "--tokenizer_name" if tokenizer_name else "--model_name_or_path"
    tokenizer = _from_pretrained(AutoTokenizer, tokenizer_name or model_name_or_path, option)
    overrides = {key: value for key, value in config_overrides.items() if value is not None}
    option = "--model_name_or_path"
    if encoder_config is not None:
        config = KoSentTypeConfig(encoder_config=load_encoder_config(encoder_config), backbone_name=None, **overrides)
        model = KoSentTypeForSequenceClassification(config)
    elif _from_pretrained(AutoConfig, model_name_or_path, option).model_type == KoSentTypeConfig.model_type:
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
    # Past the encoder's positions, training would stop with an IndexError at the first long batch.
    tokenizer.model_max_length = capped_max_length(max_seq_length, model.config.to_dict())
    if tokenizer.model_max_length < max_seq_length:
        logger.warning(
            f"--max_seq_length {max_seq_length} is more than the encoder takes; sentences are cut at "
            f"{tokenizer.model_max_length}."
        )
    return model, tokenizer
