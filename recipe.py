"""The published training recipe, in one place: every default `kosenttype-train` starts from.

These are the settings the published model was trained with (the model card's "Training procedure"); each is a
`kosenttype-train` argument of the same name, so any of them can be changed on the command line or in a JSON
arguments file. `Recipe.as_arguments()` is what the argument parser is given as its defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .configuration_kosenttype import DEFAULT_BACKBONE


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
