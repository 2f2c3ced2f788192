"""kosenttype-train: retrain or cross-validate the Korean sentence-type classifier with the stock `Trainer`.

Defaults are `recipe.py`'s, every `TrainingArguments` flag works on top, and one JSON file may hold all arguments.
`--output_dir` holds the Trainer's checkpoints and `model/`, the Hub package. docs/training.md has the reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from accelerate import PartialState
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    HfArgumentParser,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import is_torch_bf16_gpu_available, is_torch_cuda_available

from kosenttype import SENTENCE_TYPES, labelled_data, reporting
from kosenttype.atomic_output import staged_folder, write_text_atomically
from kosenttype.command_line import option
from kosenttype.configuration_kosenttype import normalize_loss_weights
from kosenttype.errors import KoSentTypeError, one_line, run_command
from kosenttype.hub_publishing import push_folder
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.labelled_data import Example, label_counts
from kosenttype.model_card import write_model_card
from kosenttype.recipe import RECIPE, check_local_sources, load_encoder_config, starting_model
from kosenttype.weighting import WeightedTrainer, class_weights_from_counts, sample_weights_for

logger = logging.getLogger(__name__)

PROGRAM = "kosenttype-train"
PACKAGE_FOLDER = "model"  # output_dir/model: the Hub-ready package; output_dir itself is the Trainer's
RUN_RECORD = "training_run.json"  # the run's data and arguments, which a resume must match
# The arguments that shape the training trajectory: a checkpoint resumes only a run that had the same ones.
RESUMABLE_TRAINING_ARGUMENTS = (
    *("learning_rate", "weight_decay", "warmup_ratio", "warmup_steps", "lr_scheduler_type", "max_grad_norm"),
    *("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "optim"),
    *("label_smoothing_factor", "seed", "data_seed", "metric_for_best_model"),
)


@dataclass
class ModelArguments:
    """Where the model starts from: a pretrained encoder, a saved kosenttype model, or a fresh encoder config."""

    model_name_or_path: str = option(
        "A pretrained encoder (Hub id or folder) to start from with a new head, or a saved kosenttype classifier.",
        RECIPE.model_name_or_path,
    )
    tokenizer_name: str | None = option("Tokenizer (Hub id or folder), if not the one of model_name_or_path.")
    encoder_config: str | None = option(
        "Train from scratch: the encoder's configuration, a JSON file or an inline JSON object; model_name_or_path "
        "is then only the tokenizer's fallback."
    )
    pooling: Literal["mean", "cls"] | None = option("Sentence pooling (default: mean, or the saved model's).")
    classifier_dropout: float | None = option("Dropout before the linear head (default: 0.1, or the saved model's).")
    license: str = option("Licence written into the model card.", "apache-2.0")
    attribute_loss_weight: str | None = option(
        "Each attribute axis's weight in the joint loss (the type's is 1): one number, or pairs like "
        "polarity=0.5,tense=1 (default 1)."
    )


@dataclass
class DataTrainingArguments:
    """The data, and how the imbalanced classes are weighted, sampled and validated."""

    train_file: str = option("Training data: JSON array, JSON Lines, CSV or TSV.", MISSING)
    validation_file: str | None = option("Validation data; without it, a stratified part of train_file is held out.")
    test_file: str | None = option("Labelled test data, evaluated once at the end.")
    text_column: str | None = option("Column of the sentences (default: sentence, or 문장 in DACON files).")
    label_column: str | None = option("Column of the types, as names or ids 0-3 (default: label, or 유형 in DACON).")
    attribute_columns: str | None = option(
        "Also train attribute heads, one per axis named here, comma-separated: polarity, tense, certainty "
        "(prepare_aihub.py's columns) or DACON's 극성, 시제, 확실성."
    )
    validation_split_percentage: int = option("Percentage of train_file held out when there is no validation.", 10)
    max_seq_length: int = option(
        "Longer sentences are truncated to this many tokens (at most what the encoder takes).", RECIPE.max_seq_length
    )
    class_weighting: Literal["balanced", "inverse_sqrt", "none"] = option(
        "Class weights of the loss: balanced = n / (k * n_c), inverse_sqrt = 1 / sqrt(n_c) (mean 1), none.",
        RECIPE.class_weighting,
    )
    weighted_sampler: bool = option(
        "Draw training sentences so every type is equally likely (--no_weighted_sampler: shuffle).",
        RECIPE.weighted_sampler,
    )
    early_stopping_patience: int = option(
        "Stop after this many evaluations without a better metric; 0 never stops.", RECIPE.early_stopping_patience
    )
    cv_folds: int = option("Stratified k-fold cross-validation over train_file with k folds (0: off).", 0)

    def __post_init__(self) -> None:
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise KoSentTypeError(f"--cv_folds must be 0 (off) or at least 2, not {self.cv_folds}")
        if not 0 < self.validation_split_percentage < 100:
            raise KoSentTypeError("--validation_split_percentage must be between 1 and 99")

    @property
    def attributes(self) -> dict[str, list[str]]:
        """The axes --attribute_columns asks for, each with its labels in head order ({} for none)."""
        names = (self.attribute_columns or "").split(",")
        return labelled_data.attribute_axes([name.strip() for name in names if name.strip()])


@dataclass
class KoSentTypeTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus two of ours; `parse_arguments` gives them the recipe's defaults."""

    overwrite_output_dir: bool = option(
        "Train into an output_dir holding another run: its checkpoints are deleted, its model replaced at the end.",
        False,
    )
    auto_mixed_precision: bool = option(
        "Without --bf16/--fp16: bf16 on GPUs that have it, else fp16 on CUDA; fp32 on CPU (--no_...: fp32).", True
    )

    def __post_init__(self) -> None:
        accelerator = getattr(torch, "accelerator", None)
        has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
        # Several processes and no GPU: without use_cpu, accelerate sets up no DDP, and each process would train
        # alone on all the data (all of them writing the same output).
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator:
            logger.warning("torchrun/accelerate on a machine without GPU: training on the CPUs (--use_cpu).")
            self.use_cpu = True
        if self.auto_mixed_precision and not (self.bf16 or self.fp16 or self.use_cpu):
            self.bf16, self.fp16 = preferred_mixed_precision()
        if not is_torch_cuda_available():
            self.dataloader_pin_memory = False  # pinning needs a GPU; without one torch warns at every epoch
        super().__post_init__()


def preferred_mixed_precision() -> tuple[bool, bool]:
    """(bf16, fp16) for this machine: bf16 keeps fp32's range, so it wins where the GPU has it."""
    return (True, False) if is_torch_bf16_gpu_available() else (False, is_torch_cuda_available())


def parse_arguments(argv: Sequence[str]) -> tuple[ModelArguments, DataTrainingArguments, KoSentTypeTrainingArguments]:
    """Command-line flags, or one JSON file holding them all; what neither sets is the recipe's."""
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, KoSentTypeTrainingArguments),
        prog=PROGRAM,
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            return parser.parse_dict({**RECIPE.as_arguments(), **_arguments_file(argv[0])})
        parser.set_defaults(**RECIPE.as_arguments())
        return parser.parse_args_into_dataclasses(args=list(argv))
    except ValueError as error:  # TrainingArguments refusing a combination, or a JSON file's unknown key
        raise KoSentTypeError(one_line(error)) from None


def _arguments_file(path: str) -> dict[str, Any]:
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KoSentTypeError(f"{path}: cannot read the arguments: {one_line(error)}") from None
    if not isinstance(values, dict):
        raise KoSentTypeError(f"{path}: expected a JSON object of arguments")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run_command(PROGRAM, lambda: run(sys.argv[1:] if argv is None else argv))
    finally:
        # Left open, torchrun's process group can abort a finished process from gloo's threads ("terminate called
        # without an active exception") and turn a successful run into a failed one.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run(argv: Sequence[str]) -> int:
    model_args, data_args, training_args = parse_arguments(argv)
    # run_glue.py's logging: INFO on the main process, warnings elsewhere, transformers in step.
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("kosenttype").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    train(model_args, data_args, training_args)
    return 0


def train(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: KoSentTypeTrainingArguments
) -> dict[str, Any]:
    """Check everything before writing, then train once (or once per fold) and return the metrics: `{"train": ...,
    "eval": ..., "test": ...}` or, cross-validating, `{"folds": [...], "mean": {...}, "std": {...}}`."""
    attribute_loss_weights(model_args.attribute_loss_weight, data_args.attributes)  # checked up front
    splits, names = read_splits(data_args, training_args.seed)
    folds = None
    if data_args.cv_folds:
        folds = labelled_data.cross_validation_folds(
            splits["train"], data_args.cv_folds, training_args.seed, SENTENCE_TYPES, names["train"]
        )
    check_local_sources(model_args.model_name_or_path, model_args.tokenizer_name, model_args.encoder_config)
    resume = prepare_output_dir(training_args, run_record(model_args, data_args, training_args), folds is not None)
    if folds is not None:
        return cross_validate(folds, splits, names, model_args, data_args, training_args)
    return fit(splits, names, model_args, data_args, training_args, resume)


def read_splits(data_args: DataTrainingArguments, seed: int) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """The labelled examples of each split (train, maybe test, eval), and their file names for the card and logs
    (a published card should not carry this machine's paths)."""
    if data_args.cv_folds and data_args.validation_file:
        logger.warning("--cv_folds validates on held-out folds of --train_file; --validation_file is ignored.")
    files = {"train": data_args.train_file, "test": data_args.test_file}
    files["eval"] = None if data_args.cv_folds else data_args.validation_file
    splits, names = {}, {}
    for split, path in files.items():
        if path:
            columns = (data_args.text_column, data_args.label_column, data_args.attributes)
            splits[split] = labelled_data.read_labelled_file(path, SENTENCE_TYPES, *columns)
            names[split] = Path(path).name
            if split != "train":
                labelled_data.report_shared_sentences(splits["train"], splits[split], data_args.train_file, path)
    if not data_args.cv_folds and "eval" not in splits:
        percentage = data_args.validation_split_percentage
        splits["train"], splits["eval"] = labelled_data.hold_out_validation(splits["train"], percentage, seed)
        names["eval"] = f"{percentage}% held out of {names['train']}"
    return splits, names


def attribute_loss_weights(value: str | None, attributes: dict[str, list[str]]) -> dict[str, float] | None:
    """--attribute_loss_weight as `{axis: weight}`: one number for every axis, or `axis=number` pairs."""
    if not value or not attributes:
        return None
    try:
        if "=" not in value:
            weights = dict.fromkeys(attributes, float(value))
        else:
            weights = {axis.strip(): float(weight) for axis, weight in (pair.split("=") for pair in value.split(","))}
        return normalize_loss_weights(weights, attributes)  # the config's own rule: known axes, finite, >= 0
    except ValueError:
        raise KoSentTypeError(
            f"--attribute_loss_weight {value}: expected a number >= 0 or axis=number pairs for the axes "
            f"{', '.join(attributes)}, e.g. {next(iter(attributes))}=0.5"
        ) from None


def run_record(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """What makes a run this run: the data files' contents and the arguments that shape training."""
    files = {key: path for key in ("train_file", "validation_file", "test_file") if (path := getattr(data_args, key))}
    arguments = {
        **{f"{key} (content)": hashlib.sha256(Path(path).read_bytes()).hexdigest() for key, path in files.items()},
        **dataclasses.asdict(model_args),
        "encoder_config": load_encoder_config(model_args.encoder_config) if model_args.encoder_config else None,
        **{key: value for key, value in dataclasses.asdict(data_args).items() if key not in files},
        **{key: getattr(training_args, key) for key in RESUMABLE_TRAINING_ARGUMENTS if hasattr(training_args, key)},
    }
    arguments.pop("license")
    return json.loads(json.dumps(arguments, default=str))  # as it reads back from the file


def prepare_output_dir(args: KoSentTypeTrainingArguments, record: dict[str, Any], cross_validation: bool) -> str | None:
    """Refuse to mix two runs in one folder (unless --overwrite_output_dir, or --resume_from_checkpoint of a run
    with the same data and arguments), then record this one; return what `Trainer.train` resumes from."""
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise KoSentTypeError(f"--output_dir {output} exists and is not a folder")
    resume = args.resume_from_checkpoint
    if resume and cross_validation:
        raise KoSentTypeError("--resume_from_checkpoint resumes one run, not a cross-validation; start it again")
    if resume and args.overwrite_output_dir:
        raise KoSentTypeError(
            "--resume_from_checkpoint continues the run in --output_dir; --overwrite_output_dir would delete it: "
            "choose one"
        )
    checkpoint = resumed_checkpoint(output, resume, record) if resume else None
    holds_other_run = output.is_dir() and any(output.iterdir()) and (checkpoint is None or checkpoint.parent != output)
    if holds_other_run and not args.overwrite_output_dir:
        content = ", ".join(sorted(path.name for path in output.iterdir())[:4])
        raise KoSentTypeError(
            f"--output_dir {output} already holds a run ({content}); pass --overwrite_output_dir to replace it, or "
            "--resume_from_checkpoint true to continue it"
        )
    PartialState().wait_for_everyone()  # every process has looked before the first one writes
    if args.should_save:
        if args.overwrite_output_dir:
            for stale in output.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):  # they would mix with this run's
                shutil.rmtree(stale)
        write_text_atomically(output / RUN_RECORD, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return str(checkpoint) if checkpoint is not None else None


def resumed_checkpoint(output: Path, resume: str, record: dict[str, Any]) -> Path:
    """The checkpoint `--resume_from_checkpoint` names (`true`: output_dir's last), once its run is known to have
    had this run's data and arguments."""
    if resume.lower() in ("true", "last"):
        last = get_last_checkpoint(output) if output.is_dir() else None
        if last is None:
            raise KoSentTypeError(f"--resume_from_checkpoint {resume}: {output} holds no checkpoint to resume from")
        checkpoint = Path(last)
    else:
        checkpoint = Path(resume)
        if not (checkpoint / "trainer_state.json").is_file():
            state = "not found" if not checkpoint.exists() else "not a Trainer checkpoint (no trainer_state.json)"
            raise KoSentTypeError(f"--resume_from_checkpoint {resume}: {state}")
    try:
        previous = json.loads((checkpoint.parent / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise KoSentTypeError(
            f"--resume_from_checkpoint {resume}: {checkpoint.parent} has no readable {RUN_RECORD}, so whether "
            "its checkpoints come from this data and these arguments can't be checked; start a new run"
        ) from None
    key = next((key for key in sorted(set(previous) | set(record)) if previous.get(key) != record.get(key)), None)
    if key is not None:
        raise KoSentTypeError(
            f"--resume_from_checkpoint {resume}: {checkpoint} comes from another run ({key} was "
            f"{previous.get(key)!r:.80}, is now {record.get(key)!r:.80}); use a new --output_dir, or "
            "--overwrite_output_dir to start over"
        )
    return checkpoint


def fit(
    splits: dict[str, list[Example]],
    names: dict[str, str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: KoSentTypeTrainingArguments,
    resume: str | None = None,
) -> dict[str, Any]:
    """One training run with the recipe's class weights (per head) and sampler: fit, restore the best checkpoint,
    evaluate, save the package and its card."""
    set_seed(training_args.seed)
    attributes = data_args.attributes
    model, tokenizer = starting_model(
        model_args.model_name_or_path,
        model_args.tokenizer_name,
        model_args.encoder_config,
        data_args.max_seq_length,
        id2label=dict(enumerate(SENTENCE_TYPES)),
        pooling=model_args.pooling,
        classifier_dropout=model_args.classifier_dropout,
        attributes=attributes or None,
        attribute_loss_weights=attribute_loss_weights(model_args.attribute_loss_weight, attributes),
    )
    datasets = {
        split: labelled_data.to_dataset(examples, tokenizer, tokenizer.model_max_length, SENTENCE_TYPES)
        for split, examples in splits.items()
    }
    train_examples = splits["train"]
    counts = label_counts(train_examples, SENTENCE_TYPES)
    class_weights = class_weights_from_counts(counts, data_args.class_weighting)
    counts_by_type = dict(zip(SENTENCE_TYPES, counts, strict=True))
    logger.info(f"Training label counts {counts_by_type}; class weights {class_weights.tolist()}")
    patience = data_args.early_stopping_patience if training_args.load_best_model_at_end else 0
    if data_args.early_stopping_patience > 0 and not patience:  # it compares evaluations by the best-model metric
        logger.warning("Early stopping is off: it needs --load_best_model_at_end (and an eval strategy).")
    # With attribute heads the Trainer must be told both label inputs, or it would not evaluate them.
    label_names = {"label_names": ["labels", "attribute_targets"]} if attributes else {}
    trainer = WeightedTrainer(
        model=model,
        args=dataclasses.replace(training_args, push_to_hub=False, **label_names),  # the package is pushed at the end
        train_dataset=datasets["train"],
        eval_dataset=datasets["eval"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if training_args.bf16 or training_args.fp16 else None
        ),
        compute_metrics=reporting.metrics_computer(SENTENCE_TYPES, attributes),
        callbacks=[*([EarlyStoppingCallback(patience)] if patience > 0 else []), HubTokenizerInCheckpoints()],
        class_weights=class_weights,
        sample_weights=sample_weights_for([ex.label for ex in train_examples]) if data_args.weighted_sampler else None,
        attribute_class_weights=[
            class_weights_from_counts(label_counts(train_examples, labels, axis), data_args.class_weighting)
            for axis, labels in enumerate(attributes.values())
        ],
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    evaluations = {
        split: evaluate_split(trainer, data, split, attributes) for split, data in datasets.items() if split != "train"
    }
    if trainer.is_world_process_zero():
        package = save_package(trainer, evaluations, splits, names, model_args, data_args, training_args)
        if training_args.push_to_hub:
            push_folder(  # only the package: no checkpoints or training state
                package,
                training_args.hub_model_id or Path(training_args.output_dir).absolute().name,
                commit_message="End of training",
                private=training_args.hub_private_repo,
                token=training_args.hub_token,
                revision=training_args.hub_revision,
            )
    return {"train": train_result.metrics, **{split: result["metrics"] for split, result in evaluations.items()}}


class HubTokenizerInCheckpoints(TrainerCallback):
    """Saves each checkpoint's tokenizer as the Hub needs it (loadable by transformers 4.57 and 5.x), so that a
    checkpoint is a loadable package too."""

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        tokenizer = kwargs.get("processing_class")
        if state.is_world_process_zero and folder.is_dir() and isinstance(tokenizer, PreTrainedTokenizerBase):
            save_tokenizer_for_hub(tokenizer, folder, tokenizer.model_max_length)


def evaluate_split(trainer: Trainer, dataset: Any, split: str, attributes: dict[str, list[str]]) -> dict[str, Any]:
    """Predict once; log and save the Trainer's flat metrics and print the per-label tables."""
    prediction = trainer.predict(dataset, metric_key_prefix=split)
    metrics = reporting.evaluation_metrics(prediction.predictions, prediction.label_ids, SENTENCE_TYPES, attributes)
    labels, predicted = reporting.type_labels_and_predictions(prediction)
    trainer.log_metrics(split, prediction.metrics)
    trainer.save_metrics(split, prediction.metrics)
    if trainer.is_world_process_zero():
        print(f"\n{split} ({len(dataset)} sentences)\n{reporting.format_metrics_table(metrics)}\n", flush=True)
    return {"metrics": metrics, "flat": prediction.metrics, "labels": labels, "predicted": predicted}


def save_package(
    trainer: Trainer,
    evaluations: dict[str, dict],
    splits: dict[str, list[Example]],
    names: dict[str, str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    args: TrainingArguments,
) -> Path:
    """output_dir/model, whole or not at all: the best model, its tokenizer, metrics, confusion matrices and card
    (the test split's metrics if any, else the validation split's; the hyper-parameters as the run used them) —
    nothing of the training state, so the folder can be published as it is."""
    shown = "test" if "test" in evaluations else "eval"
    counts = label_counts(splits["train"], SENTENCE_TYPES)
    mix = ", ".join(f"{name} {count}" for name, count in zip(SENTENCE_TYPES, counts, strict=True))
    procedure = {
        "start": model_args.model_name_or_path if model_args.encoder_config is None else "encoder trained from scratch",
        "optimizer": f"{args.optim} (lr {args.learning_rate}, weight decay {args.weight_decay})",
        "schedule": f"{args.lr_scheduler_type} with warmup {getattr(args, 'warmup_ratio', None) or args.warmup_steps}",
        "epochs": f"{args.num_train_epochs} (early stopping patience {data_args.early_stopping_patience})",
        "epochs trained": round(trainer.state.epoch or 0, 2),
        "batch size": args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size),
        "max_length": trainer.processing_class.model_max_length,
        "max grad norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "class weighting": data_args.class_weighting,
        "weighted sampler": data_args.weighted_sampler,
        "best checkpoint by": args.metric_for_best_model,
        "seed": args.seed,
    }
    evaluated = f"{names[shown]} ({len(splits[shown])} sentences)"
    card = {
        "metrics": {**evaluations[shown]["metrics"], "eval_dataset": evaluated},
        "training_procedure": procedure,
        "datasets_note": f"`{names['train']}`: {sum(counts)} sentences ({mix}).",
        "license": model_args.license,
        "repo_id": args.hub_model_id if args.push_to_hub else None,
    }
    folder = Path(args.output_dir, PACKAGE_FOLDER)
    model = trainer.accelerator.unwrap_model(trainer.model)
    tokenizer = trainer.processing_class
    with staged_folder(folder, replace=True) as staging:
        model.save_pretrained(staging)
        save_tokenizer_for_hub(tokenizer, staging, tokenizer.model_max_length)
        for split, evaluation in evaluations.items():
            text = json.dumps(evaluation["flat"], ensure_ascii=False, indent=4, sort_keys=True) + "\n"
            (staging / f"{split}_results.json").write_text(text, encoding="utf-8")
            matrix = staging / f"{split}_confusion_matrix.png"
            reporting.save_confusion_matrix(evaluation["labels"], evaluation["predicted"], SENTENCE_TYPES, matrix)
        write_model_card(staging, model.config, **card)
    logger.info(f"The model package is in {folder}")
    return folder


def cross_validate(
    folds: list[tuple[list[Example], list[Example]]],
    splits: dict[str, list[Example]],
    names: dict[str, str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: KoSentTypeTrainingArguments,
) -> dict[str, Any]:
    """One run per stratified fold in `output_dir/fold_k`, then mean ± std over the held-out folds' metrics."""
    if training_args.push_to_hub:
        logger.warning("--push_to_hub is ignored with --cv_folds: the folds' models are for evaluation.")
    fold_metrics = []
    for fold, (train_part, held_out) in enumerate(folds):
        fold_args = dataclasses.replace(
            training_args, output_dir=os.path.join(training_args.output_dir, f"fold_{fold}"), push_to_hub=False
        )
        fold_splits = {**splits, "train": train_part, "eval": held_out}
        fold_names = {**names, "eval": f"fold {fold} of {names['train']}"}
        fold_metrics.append(fit(fold_splits, fold_names, model_args, data_args, fold_args)["eval"])
    summary = reporting.summarize_folds(fold_metrics)
    if training_args.process_index == 0:
        print(f"\n{data_args.cv_folds}-fold cross-validation\n{reporting.format_cv_table(summary)}\n", flush=True)
        text = json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
        write_text_atomically(Path(training_args.output_dir, "cv_results.json"), text)
    return summary


if __name__ == "__main__":
    sys.exit(main())
