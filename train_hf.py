"""Retrain or cross-validate the Korean sentence-type classifier with the stock Hugging Face `Trainer`.

The published recipe is the default (backbone jhgan/ko-sroberta-multitask, AdamW lr 2e-5, weight decay 0.01, 10%
warmup then linear decay, max length 256, batch 32, 8 epochs, early stopping patience 2 on macro-F1, gradient clipping
1.0, bf16/fp16 on a GPU that has it, class-weighted cross-entropy and a weighted random sampler, best checkpoint by
macro-F1), and every `TrainingArguments` flag works on top of it:

    python train_hf.py --train_file train.json --validation_file dev.json --output_dir runs/kosenttype
    python train_hf.py config.json                      # all arguments in one JSON file
    python train_hf.py --train_file train.json --cv_folds 5 --output_dir runs/cv
    torchrun --nproc_per_node 4 train_hf.py config.json

The output folder is a Hub model package: weights, config with `auto_map`, both code files, tokenizer, model card,
metrics as JSON and a confusion-matrix PNG.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from datasets import Dataset
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch.utils.data import Sampler
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    HfArgumentParser,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from transformers.utils import is_torch_bf16_gpu_available, is_torch_cuda_available

from kosenttype import SENTENCE_TYPES, KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.atomic_output import write_text_atomically
from kosenttype.configuration_kosenttype import DEFAULT_BACKBONE
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.metrics import classification_metrics
from kosenttype.model_card import SENTENCE_TYPE_DEFINITIONS, write_model_card

logger = logging.getLogger(__name__)

# Column pairs (text, label) looked for when none is named: ours and prepare_aihub.py's, then DACON's.
KNOWN_COLUMNS = (("sentence", "label"), ("문장", "유형"))
CLASS_WEIGHTINGS = ("balanced", "inverse_sqrt", "none")
SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")
# Fonts that have Hangul, in order of preference, for the confusion matrix's axis labels.
HANGUL_FONTS = (
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "NanumGothic",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
)


# ---- Arguments ---------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Where the model starts from: a pretrained encoder, a saved kosenttype model, or a fresh encoder config."""

    model_name_or_path: str = field(
        default=DEFAULT_BACKBONE,
        metadata={
            "help": "A pretrained encoder (Hub id or folder) whose weights start training, with a new head; or a "
            "saved kosenttype classifier to train further."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer (Hub id or folder), if not the one of model_name_or_path."}
    )
    encoder_config: str | None = field(
        default=None,
        metadata={
            "help": "Train from scratch: the encoder's configuration as a JSON file or an inline JSON object "
            '(e.g. \'{"model_type": "roberta", "hidden_size": 256, ...}\'); model_name_or_path is then only the '
            "tokenizer's fallback."
        },
    )
    pooling: Literal["mean", "cls"] | None = field(
        default=None, metadata={"help": "Sentence pooling (default: mean, or the saved model's)."}
    )
    classifier_dropout: float | None = field(
        default=None, metadata={"help": "Dropout before the linear head (default: 0.1, or the saved model's)."}
    )
    license: str = field(default="apache-2.0", metadata={"help": "Licence written into the model card."})


@dataclass
class DataTrainingArguments:
    """The data, and how the imbalanced classes are weighted, sampled and validated."""

    train_file: str = field(metadata={"help": "Training data: JSON array, JSON Lines or CSV."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation data; without it, a stratified part of train_file is held out."}
    )
    test_file: str | None = field(default=None, metadata={"help": "Labelled test data, evaluated once at the end."})
    text_column: str | None = field(
        default=None, metadata={"help": "Column of the sentences (default: sentence, or 문장 in DACON files)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Column of the types, as names or ids 0-3 (default: label, or 유형 in DACON files)."},
    )
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percentage of train_file held out for validation when there is no file."}
    )
    max_seq_length: int = field(default=256, metadata={"help": "Longer sentences are truncated to this many tokens."})
    class_weighting: Literal["balanced", "inverse_sqrt", "none"] = field(
        default="balanced",
        metadata={
            "help": "Cross-entropy class weights from the training label counts: balanced = n / (k * n_c), "
            "inverse_sqrt = 1 / sqrt(n_c) rescaled to mean 1 per sentence, none = unweighted."
        },
    )
    weighted_sampler: bool = field(
        default=True,
        metadata={
            "help": "Draw each epoch's training sentences with replacement so every type is equally likely "
            "(--no_weighted_sampler: plain shuffling)."
        },
    )
    early_stopping_patience: int = field(
        default=2, metadata={"help": "Stop after this many evaluations without a better metric; 0 never stops."}
    )
    cv_folds: int = field(
        default=0, metadata={"help": "Stratified k-fold cross-validation over train_file with k folds (0: off)."}
    )

    def __post_init__(self) -> None:
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ValueError(f"--cv_folds must be 0 (off) or at least 2, not {self.cv_folds}.")
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError("--validation_split_percentage must be between 1 and 99.")


_HAS_WARMUP_RATIO = "warmup_ratio" in {spec.name for spec in dataclasses.fields(TrainingArguments)}


@dataclass
class RecipeTrainingArguments(TrainingArguments):
    """`TrainingArguments` whose defaults are the published recipe; every Trainer flag still overrides them."""

    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    # transformers 5.x takes the warmup ratio as a float warmup_steps; 4.x has a warmup_ratio of its own.
    if _HAS_WARMUP_RATIO:
        warmup_ratio: float = field(default=0.1, metadata={"help": "Share of the steps spent warming up."})
    else:
        warmup_steps: float = field(
            default=0.1, metadata={"help": "Warmup: a number of steps, or a float in [0, 1) for a share of them."}
        )
    num_train_epochs: float = field(default=8.0, metadata={"help": "Number of training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When to save a checkpoint: no, steps, epoch, best."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one always is); each can be 1 GB+ with optimizer."}
    )
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Restore the best checkpoint at the end."})
    metric_for_best_model: str | None = field(default="macro_f1", metadata={"help": "Metric choosing the best."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether a larger metric is better."})
    # The order of this union is HfArgumentParser's: it takes the member after the first as the flag's type (str).
    report_to: None | str | list[str] = field(  # noqa: RUF036
        default="none", metadata={"help": "Experiment trackers to log to (4.x logs to all installed by default)."}
    )
    auto_mixed_precision: bool = field(
        default=True,
        metadata={
            "help": "Without --bf16/--fp16, use bf16 on a GPU that supports it, else fp16 on a CUDA GPU; fp32 on "
            "CPU. --no_auto_mixed_precision keeps fp32 everywhere."
        },
    )

    def __post_init__(self) -> None:
        if not self.use_cpu and launched_without_accelerator():
            logger.warning("torchrun/accelerate on a machine without GPU: training on the CPUs (--use_cpu).")
            self.use_cpu = True
        if self.auto_mixed_precision and not (self.bf16 or self.fp16 or self.use_cpu):
            self.bf16, self.fp16 = preferred_mixed_precision()
        if not is_torch_cuda_available():
            self.dataloader_pin_memory = False  # pinning needs a GPU; without one torch warns at every epoch
        super().__post_init__()


def launched_without_accelerator() -> bool:
    """Several processes and no GPU: without `use_cpu`, accelerate sets up no DDP there, and every process would
    silently train alone on all the data as if it were the only one (and all of them write the same output)."""
    accelerator = getattr(torch, "accelerator", None)
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def preferred_mixed_precision() -> tuple[bool, bool]:
    """(bf16, fp16) for this machine: bf16 keeps fp32's range, so it wins where the GPU has it."""
    if is_torch_bf16_gpu_available():
        return True, False
    return False, is_torch_cuda_available()


# ---- Data -------------------------------------------------------------------------------------------------------


class InputError(ValueError):
    """A problem with what the user gave (a data file's row, an argument), reported as one line naming it."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int


def read_labelled_file(
    path: str | os.PathLike,
    label_names: Sequence[str],
    text_column: str | None = None,
    label_column: str | None = None,
) -> list[Example]:
    """Read a JSON array, JSON Lines or CSV file of labelled sentences, refusing the first bad row.

    Training on a silently skipped or mislabelled row would shift every metric without anyone noticing, so any
    missing field, empty text or unknown label stops the run with the file and row named.
    """
    rows = _iter_rows(Path(path))
    first = next(rows, None)
    if first is None:
        raise InputError(f"{path}: no rows")
    text_key, label_key = _resolve_columns(path, first[1].keys(), text_column, label_column)
    return [
        _parse_row(path, position, row, text_key, label_key, label_names)
        for position, row in itertools.chain([first], rows)
    ]


def _iter_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) pairs; `where` is how a person finds the row again: a line number, or an array item's."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise InputError(f"{path}: unsupported format; expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            yield from _iter_csv_rows(path)
        else:
            yield from _iter_json_rows(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start})") from None


def _iter_csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    # utf-8-sig: spreadsheet programs put a byte-order mark in front of the header.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        for row in reader:
            yield f"line {reader.line_num}", row


def _iter_json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: line {error.lineno}: invalid JSON ({error.msg})") from None
        numbered = ((f"item {index}", item) for index, item in enumerate(items, start=1))
    else:
        numbered = ((f"line {number}", _json_line(path, number, line)) for number, line in _non_blank_lines(text))
    for position, item in numbered:
        if not isinstance(item, dict):
            raise InputError(f"{path}: {position}: expected an object with the text and label, got {item!r:.60}")
        yield position, item


def _non_blank_lines(text: str) -> Iterator[tuple[int, str]]:
    return ((number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip())


def _json_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: line {number}: invalid JSON ({error.msg})") from None


def _resolve_columns(
    path: str | os.PathLike, available: Any, text_column: str | None, label_column: str | None
) -> tuple[str, str]:
    """The (text, label) columns: the named ones, else the first known pair the file has."""
    available = [key for key in available if key is not None]
    candidates = [(text_column or text, label_column or label) for text, label in KNOWN_COLUMNS]
    for text, label in candidates:
        if text in available and label in available:
            return text, label
    for text, label in candidates:
        if text in available:
            return text, label
    expected = text_column or " or ".join(text for text, _ in KNOWN_COLUMNS)
    raise InputError(f"{path}: no text column {expected} (columns: {', '.join(available)}); set --text_column")


def _parse_row(
    path: str | os.PathLike, position: str, row: dict, text_key: str, label_key: str, label_names: Sequence[str]
) -> Example:
    text = row.get(text_key)
    if text is None:
        raise InputError(f"{path}: {position}: missing field '{text_key}'")
    if not isinstance(text, str):
        raise InputError(f"{path}: {position}: '{text_key}' is not text: {text!r:.60}")
    if not text.strip():
        raise InputError(f"{path}: {position}: empty text in '{text_key}'")
    if row.get(label_key) in (None, ""):
        raise InputError(f"{path}: {position}: missing field '{label_key}'")
    label = parse_label(row[label_key], label_names)
    if label is None:
        raise InputError(
            f"{path}: {position}: unknown label {row[label_key]!r} in '{label_key}'; expected one of "
            f"{', '.join(label_names)} or an id 0-{len(label_names) - 1}"
        )
    return Example(text.strip(), label)


def parse_label(value: Any, label_names: Sequence[str]) -> int | None:
    """A label id from a name or an id (CSV ids arrive as strings); None for anything else."""
    if isinstance(value, str):
        value = value.strip()
        if value in label_names:
            return label_names.index(value)
        value = int(value) if value.isdigit() else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(label_names):
        return value
    return None


def report_shared_sentences(
    train: Sequence[Example], other: Sequence[Example], train_name: str, other_name: str
) -> int:
    """Warn about sentences of an evaluation set that training also sees: they inflate its scores."""
    training_texts = {example.text for example in train}
    shared = list(dict.fromkeys(example.text for example in other if example.text in training_texts))
    if shared:
        samples = "; ".join(repr(text if len(text) <= 40 else text[:39] + "…") for text in shared[:3])
        logger.warning(
            f"{len(shared)} sentences of {other_name} also appear in {train_name} (its scores are optimistic), "
            f"e.g. {samples}"
        )
    return len(shared)


def hold_out_validation(examples: Sequence[Example], percentage: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off a stratified validation part, so a lone training file still gets a best-checkpoint choice."""
    labels = [example.label for example in examples]
    stratify = labels if min(Counter(labels).values()) >= 2 else None
    train, validation = train_test_split(
        list(examples), test_size=percentage / 100, random_state=seed, stratify=stratify
    )
    return train, validation


def to_dataset(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Tokenize once up front; padding is left to the collator, per batch."""
    dataset = Dataset.from_dict(
        {"text": [example.text for example in examples], "labels": [example.label for example in examples]}
    )
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )


# ---- Weighting --------------------------------------------------------------------------------------------------


def class_weights_from_counts(counts: Sequence[int], scheme: str) -> torch.Tensor:
    """Cross-entropy weights per class, each scheme scaled so an average training sentence weighs 1.

    A class absent from training gets weight 0: it never appears in a batch, and a division by its zero count
    would only spread inf into the logs.
    """
    if scheme not in CLASS_WEIGHTINGS:
        raise ValueError(f"Unknown class weighting {scheme!r}; expected one of {', '.join(CLASS_WEIGHTINGS)}.")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    if scheme == "none":
        return torch.ones_like(counts, dtype=torch.float32)
    raw = torch.where(present, counts.clamp(min=1) ** (-1.0 if scheme == "balanced" else -0.5), 0.0)
    return (raw * counts.sum() / (raw * counts).sum()).float()


def sample_weights_for(labels: Sequence[int]) -> list[float]:
    """Per-sentence draw weights 1 / n_class: every class is equally likely in each draw."""
    counts = Counter(labels)
    return [1.0 / counts[label] for label in labels]


class SeededWeightedRandomSampler(Sampler[int]):
    """A `WeightedRandomSampler` whose draw depends only on (seed, epoch), never on the global RNG.

    Under torchrun/accelerate every process builds this sampler and draws the same `num_samples` indices for the
    epoch; accelerate's `BatchSamplerShard` then deals the batches of that one draw out to the processes in turn, so
    the shards are disjoint and together are exactly the single-process draw. The Trainer (through accelerate's
    `DataLoaderShard.set_epoch`) sets the epoch before each pass, so each epoch has a new draw and a resumed run
    replays the one it was interrupted in. It deliberately has no `generator` attribute: accelerate would replace
    a `None` one with a randomly seeded generator.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw())

    def __len__(self) -> int:
        return self.num_samples


class WeightedTrainer(Trainer):
    """A `Trainer` with class-weighted cross-entropy and, optionally, a seeded weighted random sampler.

    The loss of an optimizer step is sum(w_y * CE) / sum(w_y) over the whole step's examples — all micro-batches of
    gradient accumulation and all processes — which is what one big batch would give. The Trainer divides a custom
    loss by the accumulation steps only when it thinks the model does not normalise by `num_items_in_batch`; here
    `num_items_in_batch` is the step's total weight (see `_get_num_items_in_batch`) and `compute_loss` divides by
    it, so `model_accepts_loss_kwargs` is set to say so (in transformers 4.57 and 5.x alike). Under several
    processes the total is gathered, and the loss multiplied by the process count to undo DDP's gradient averaging.
    """

    def __init__(
        self,
        *args: Any,
        class_weights: torch.Tensor | None = None,
        sample_weights: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        num_labels = self.accelerator.unwrap_model(self.model).config.num_labels
        self.class_weights = class_weights if class_weights is not None else torch.ones(num_labels)
        self.sample_weights = sample_weights
        self.model_accepts_loss_kwargs = True

    def _class_weights_on(self, device: torch.device) -> torch.Tensor:
        if self.class_weights.device != device:  # once: a copy per step would stall a GPU
            self.class_weights = self.class_weights.to(device)
        return self.class_weights

    def _label_weights(self, labels: torch.Tensor) -> torch.Tensor:
        return self._class_weights_on(labels.device)[labels]

    def _spans_processes(self) -> bool:
        return self.args.average_tokens_across_devices and self.accelerator.num_processes > 1

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """The total class weight of one optimizer step's labels: the weighted mean's denominator."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        total = sum(self._label_weights(batch["labels"]).sum() for batch in batch_samples).to(device)
        return self.accelerator.gather(total).sum() if self._spans_processes() else total

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        # Per example w_y * CE (label smoothing, if asked for, weighted per class as torch does); the Trainer's own
        # label smoother is bypassed along with its loss.
        weighted_losses = torch.nn.functional.cross_entropy(
            logits.float(),
            labels,
            weight=self._class_weights_on(labels.device),
            reduction="none",
            label_smoothing=self.args.label_smoothing_factor,
        )
        # Without the step's total (a batch on its own, as in evaluation), the batch's weighted mean.
        denominator = self._label_weights(labels).sum() if num_items_in_batch is None else num_items_in_batch
        loss = weighted_losses.sum() / denominator
        if num_items_in_batch is not None and self._spans_processes():
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler | None:
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if len(self.sample_weights) != len(dataset):
            raise ValueError(f"{len(self.sample_weights)} sample weights for {len(dataset)} training examples.")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededWeightedRandomSampler(self.sample_weights, num_samples=len(dataset), seed=seed)


class KoSentTypeTrainer(WeightedTrainer):
    """Saves every checkpoint as a Hub package (tokenizer readable by 4.57 and 5.x) and writes our model card."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save and isinstance(self.processing_class, PreTrainedTokenizerBase):
            tokenizer = self.processing_class
            save_tokenizer_for_hub(tokenizer, output_dir or self.args.output_dir, tokenizer.model_max_length)

    def create_model_card(
        self,
        metrics: dict | None = None,
        training_procedure: dict | None = None,
        datasets_note: str | None = None,
        license: str = "apache-2.0",
        **trainer_card_arguments: Any,
    ) -> None:
        """The project's card (labels, per-label metrics, recipe) instead of the Trainer's generic draft;
        `push_to_hub` calls this with our keyword arguments and its own, which we ignore."""
        if self.is_world_process_zero():
            write_model_card(
                self.args.output_dir,
                self.accelerator.unwrap_model(self.model).config,
                metrics,
                training_procedure,
                license=license,
                datasets_note=datasets_note,
                repo_id=self.hub_model_id or self.args.hub_model_id,
            )


# ---- Metrics ----------------------------------------------------------------------------------------------------


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The Trainer logs and compares flat scalars: `macro_f1`, `사실형_f1`, … ."""
    flat = {key: metrics[key] for key in ("accuracy", "macro_f1", "weighted_f1")}
    for label, scores in metrics["per_label"].items():
        flat.update({f"{label}_{name}": value for name, value in scores.items()})
    return flat


def metrics_computer(label_names: Sequence[str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """The Trainer's `compute_metrics`: argmax of the logits, then `classification_metrics`, flattened."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        return flat_metrics(classification_metrics(prediction.label_ids, predicted, label_names))

    return compute_metrics


def format_metrics_table(metrics: dict) -> str:
    """The model card's per-label table, plus the headline figures, as plain text for the log."""
    lines = [f"{'label':<8} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}"]
    for label, scores in metrics["per_label"].items():
        lines.append(
            f"{_pad_to_width(label, 8)} {scores['precision']:>9.4f} {scores['recall']:>9.4f} {scores['f1']:>9.4f} "
            f"{scores['support']:>8d}"
        )
    lines.append(
        f"accuracy {metrics['accuracy']:.4f} · macro-F1 {metrics['macro_f1']:.4f} · "
        f"weighted-F1 {metrics['weighted_f1']:.4f}"
    )
    return "\n".join(lines)


def _pad_to_width(text: str, width: int) -> str:
    """Left-align in a terminal, where each Hangul syllable takes two columns."""
    columns = sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)
    return text + " " * max(0, width - columns)


def save_confusion_matrix(
    labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str], path: Path
) -> Path | None:
    """A PNG of the counts (rows: true type, columns: predicted); skipped when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import font_manager
        from matplotlib import pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no confusion-matrix PNG (pip install matplotlib).")
        return None
    counts = confusion_matrix(labels, predictions, labels=list(range(len(label_names))))
    installed = {font.name for font in font_manager.fontManager.ttflist}
    hangul_font = next((name for name in HANGUL_FONTS if name in installed), None)
    ticks = list(label_names) if hangul_font else [_ascii_label(index, name) for index, name in enumerate(label_names)]
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set(xticks=range(len(ticks)), yticks=range(len(ticks)), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(ticks, rotation=30, ha="right", fontfamily=hangul_font or "sans-serif")
    axes.set_yticklabels(ticks, fontfamily=hangul_font or "sans-serif")
    for row, column in np.ndindex(counts.shape):
        color = "white" if counts[row, column] > counts.max() / 2 else "black"
        axes.text(column, row, int(counts[row, column]), ha="center", va="center", color=color)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _ascii_label(index: int, name: str) -> str:
    """An English tick label where no installed font has Hangul (matplotlib would draw empty boxes)."""
    definition = SENTENCE_TYPE_DEFINITIONS.get(name)
    return f"{index} {definition.split(':')[0]}" if definition else str(index)


# ---- Model ------------------------------------------------------------------------------------------------------


def load_tokenizer(model_args: ModelArguments, max_length: int) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    tokenizer.model_max_length = max_length
    return tokenizer


def load_encoder_config(description: str | dict) -> dict:
    """The --encoder_config value: a JSON file, an inline JSON object, or (from a JSON config file) a dict."""
    if isinstance(description, dict):
        return dict(description)
    if os.path.isfile(description):
        return json.loads(Path(description).read_text(encoding="utf-8"))
    try:
        return json.loads(description)
    except json.JSONDecodeError:
        raise InputError(f"--encoder_config {description!r:.80} is neither a JSON file nor a JSON object") from None


def build_model(
    model_args: ModelArguments, label_names: Sequence[str], tokenizer: PreTrainedTokenizerBase
) -> KoSentTypeForSequenceClassification:
    """A fresh encoder from a config, a pretrained encoder with a new head, or a saved kosenttype model."""
    overrides: dict[str, Any] = {"id2label": dict(enumerate(label_names)), "pad_token_id": tokenizer.pad_token_id}
    overrides.update({key: getattr(model_args, key) for key in ("pooling", "classifier_dropout")})
    overrides = {key: value for key, value in overrides.items() if value is not None}
    source = model_args.model_name_or_path
    if model_args.encoder_config is not None:
        encoder = load_encoder_config(model_args.encoder_config)
        model = KoSentTypeForSequenceClassification(
            KoSentTypeConfig(encoder_config=encoder, backbone_name=None, **overrides)
        )
    elif AutoConfig.from_pretrained(source).model_type == KoSentTypeConfig.model_type:
        model = AutoModelForSequenceClassification.from_pretrained(source, **overrides)
    else:
        model = KoSentTypeForSequenceClassification.from_backbone(source, **overrides)
    vocab_size = model.config.encoder_config.vocab_size
    if len(tokenizer) > vocab_size:
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the encoder's vocabulary only {vocab_size}")
    return model


# ---- Training ---------------------------------------------------------------------------------------------------


def train(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """Read the data, then train once (or once per fold with `cv_folds`); return the metrics.

    A single run returns `{"train": Trainer's train metrics, "eval": classification_metrics(...), "test": ...}`,
    a cross-validation `{"folds": [...], "mean": {...}, "std": {...}}`. All data is read and checked before
    anything is written, so bad input leaves no half-made output folder.
    """
    label_names = list(SENTENCE_TYPES)
    train_examples = _read(data_args.train_file, data_args, label_names)
    test_examples = _read(data_args.test_file, data_args, label_names) if data_args.test_file else None
    if test_examples is not None:
        report_shared_sentences(train_examples, test_examples, data_args.train_file, data_args.test_file)
    if data_args.cv_folds:
        if data_args.validation_file:
            logger.warning("--cv_folds validates on held-out folds of --train_file; --validation_file is ignored.")
        return cross_validate(train_examples, test_examples, label_names, model_args, data_args, training_args)
    if data_args.validation_file:
        validation_examples = _read(data_args.validation_file, data_args, label_names)
        report_shared_sentences(train_examples, validation_examples, data_args.train_file, data_args.validation_file)
        validation_name = _file_name(data_args.validation_file)
    else:
        train_examples, validation_examples = hold_out_validation(
            train_examples, data_args.validation_split_percentage, training_args.seed
        )
        validation_name = f"{data_args.validation_split_percentage}% held out of {_file_name(data_args.train_file)}"
    splits = {"train": train_examples, "eval": validation_examples, "test": test_examples}
    names = {
        "train": _file_name(data_args.train_file),
        "eval": validation_name,
        "test": _file_name(data_args.test_file),
    }
    return run_training(splits, names, label_names, model_args, data_args, training_args)


def _file_name(path: str | None) -> str | None:
    """Files by name only in the card and logs: a published card should not carry this machine's paths."""
    return Path(path).name if path else None


def _read(path: str, data_args: DataTrainingArguments, label_names: Sequence[str]) -> list[Example]:
    return read_labelled_file(path, label_names, data_args.text_column, data_args.label_column)


def run_training(
    splits: dict[str, list[Example] | None],
    names: dict[str, str | None],
    label_names: Sequence[str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """One training run: fit, restore the best checkpoint, evaluate, save the package and its card."""
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, data_args.max_seq_length)
    model = build_model(model_args, label_names, tokenizer)
    datasets = {
        split: to_dataset(examples, tokenizer, data_args.max_seq_length)
        for split, examples in splits.items()
        if examples is not None
    }
    train_labels = [example.label for example in splits["train"]]
    counts = [train_labels.count(index) for index in range(len(label_names))]
    class_weights = class_weights_from_counts(counts, data_args.class_weighting)
    logger.info(
        f"Training label counts {dict(zip(label_names, counts, strict=True))}; class weights {class_weights.tolist()}"
    )
    mixed_precision = training_args.bf16 or training_args.fp16
    trainer = KoSentTypeTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["eval"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed_precision else None),
        compute_metrics=metrics_computer(label_names),
        callbacks=_early_stopping(data_args.early_stopping_patience, training_args),
        class_weights=class_weights,
        sample_weights=sample_weights_for(train_labels) if data_args.weighted_sampler else None,
    )
    train_result = trainer.train(resume_from_checkpoint=_resume_target(training_args.resume_from_checkpoint))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    results: dict[str, Any] = {"train": train_result.metrics}
    for split in ("eval", "test"):
        if split in datasets:
            results[split] = evaluate_split(trainer, datasets[split], split, label_names)
    card_split = "test" if "test" in results else "eval"
    card_metrics = {**results[card_split], "eval_dataset": f"{names[card_split]} ({len(splits[card_split])} sentences)"}
    card_arguments = {
        "metrics": card_metrics,
        "training_procedure": training_procedure(model_args, data_args, training_args, trainer),
        "datasets_note": datasets_note(names["train"], train_labels, label_names),
        "license": model_args.license,
    }
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_arguments)  # saves the model, writes the card, uploads the folder
    else:
        trainer.save_model()
        trainer.create_model_card(**card_arguments)
    return results


def _early_stopping(patience: int, args: TrainingArguments) -> list[EarlyStoppingCallback]:
    """Early stopping compares evaluations by the best-model metric, so it needs load_best_model_at_end."""
    if patience <= 0:
        return []
    if not args.load_best_model_at_end:
        logger.warning("Early stopping is off: it needs --load_best_model_at_end (and an eval strategy).")
        return []
    return [EarlyStoppingCallback(early_stopping_patience=patience)]


def _resume_target(value: str | None) -> str | bool | None:
    """`--resume_from_checkpoint true` resumes from the output folder's last checkpoint, a path from that one."""
    if value is not None and value.lower() in ("true", "last"):
        return True
    return value


def evaluate_split(trainer: Trainer, dataset: Any, split: str, label_names: Sequence[str]) -> dict:
    """Predict once, then log/save the Trainer's flat metrics and print the per-label table and PNG."""
    prediction = trainer.predict(dataset, metric_key_prefix=split)
    predicted = np.argmax(prediction.predictions, axis=-1)
    metrics = classification_metrics(prediction.label_ids, predicted, label_names)
    trainer.log_metrics(split, prediction.metrics)
    trainer.save_metrics(split, prediction.metrics)
    if trainer.is_world_process_zero():
        print(f"\n{split} ({len(dataset)} sentences)\n{format_metrics_table(metrics)}\n", flush=True)
        save_confusion_matrix(
            prediction.label_ids, predicted, label_names, Path(trainer.args.output_dir, f"{split}_confusion_matrix.png")
        )
    return metrics


def training_procedure(
    model_args: ModelArguments, data_args: DataTrainingArguments, args: TrainingArguments, trainer: Trainer
) -> dict[str, Any]:
    """The hyper-parameters the card lists, as the run actually used them."""
    total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    warmup = getattr(args, "warmup_ratio", None) or args.warmup_steps
    return {
        "start": model_args.model_name_or_path if model_args.encoder_config is None else "encoder trained from scratch",
        "optimizer": f"{args.optim} (lr {args.learning_rate}, weight decay {args.weight_decay})",
        "schedule": f"{args.lr_scheduler_type} with warmup {warmup}",
        "epochs": f"{args.num_train_epochs} (early stopping patience {data_args.early_stopping_patience})",
        "epochs trained": round(trainer.state.epoch or 0, 2),
        "batch size": total_batch,
        "max_length": data_args.max_seq_length,
        "max grad norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "class weighting": data_args.class_weighting,
        "weighted sampler": data_args.weighted_sampler,
        "best checkpoint by": args.metric_for_best_model,
        "seed": args.seed,
    }


def datasets_note(train_name: str, train_labels: Sequence[int], label_names: Sequence[str]) -> str:
    counts = Counter(train_labels)
    mix = ", ".join(f"{name} {counts[index]}" for index, name in enumerate(label_names))
    return f"`{train_name}`: {len(train_labels)} sentences ({mix})."


# ---- Cross-validation -------------------------------------------------------------------------------------------


def cross_validate(
    examples: list[Example],
    test_examples: list[Example] | None,
    label_names: Sequence[str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """One run per stratified fold in `output_dir/fold_k`, then mean ± std over the held-out folds' metrics."""
    folds = StratifiedKFold(n_splits=data_args.cv_folds, shuffle=True, random_state=training_args.seed)
    labels = [example.label for example in examples]
    if training_args.push_to_hub:
        logger.warning("--push_to_hub is ignored with --cv_folds: the folds' models are for evaluation.")
    fold_metrics = []
    for fold, (train_index, held_out_index) in enumerate(folds.split(np.zeros(len(labels)), labels)):
        fold_args = dataclasses.replace(
            training_args, output_dir=os.path.join(training_args.output_dir, f"fold_{fold}"), push_to_hub=False
        )
        splits = {
            "train": [examples[index] for index in train_index],
            "eval": [examples[index] for index in held_out_index],
            "test": test_examples,
        }
        names = {
            "train": _file_name(data_args.train_file),
            "eval": f"fold {fold} of {_file_name(data_args.train_file)}",
            "test": _file_name(data_args.test_file),
        }
        fold_metrics.append(run_training(splits, names, label_names, model_args, data_args, fold_args)["eval"])
    summary = summarize_folds(fold_metrics)
    if training_args.process_index == 0:
        print(f"\n{data_args.cv_folds}-fold cross-validation\n{format_cv_table(summary)}\n", flush=True)
        text = json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
        write_text_atomically(Path(training_args.output_dir, "cv_results.json"), text)
    return summary


def summarize_folds(fold_metrics: list[dict]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) of every headline metric and per-label score."""
    series = {key: [metrics[key] for metrics in fold_metrics] for key in ("accuracy", "macro_f1", "weighted_f1")}
    for label in fold_metrics[0]["per_label"]:
        for score in ("precision", "recall", "f1"):
            series[f"{label}_{score}"] = [metrics["per_label"][label][score] for metrics in fold_metrics]
    return {
        "folds": fold_metrics,
        "mean": {key: float(np.mean(values)) for key, values in series.items()},
        "std": {key: float(np.std(values, ddof=1)) for key, values in series.items()},
    }


def format_cv_table(summary: dict) -> str:
    keys = [key for key in summary["mean"] if not key.endswith(("_precision", "_recall"))]
    return "\n".join(f"{_pad_to_width(key, 12)} {summary['mean'][key]:.4f} ± {summary['std'][key]:.4f}" for key in keys)


# ---- Command line -----------------------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str]) -> tuple[ModelArguments, DataTrainingArguments, RecipeTrainingArguments]:
    """Command-line flags, or one JSON file holding them all."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, RecipeTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=list(argv))


def setup_logging(training_args: TrainingArguments) -> None:
    """run_glue.py's logging: INFO on the main process, warnings elsewhere, transformers in step."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def main(argv: Sequence[str] | None = None) -> int:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    setup_logging(training_args)
    try:
        train(model_args, data_args, training_args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        close_process_group()
    return 0


def close_process_group() -> None:
    """Shut torchrun's process group down before exit: left open, gloo's threads can abort a finished process
    ("terminate called without an active exception") and turn a successful run into a failed one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
