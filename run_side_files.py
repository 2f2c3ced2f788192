"""What a training run left beside its checkpoint (tokenizer, label mapping, metrics, settings), read from the many
shapes training scripts write them in, each value with where it came from; contradicting sources are refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .configuration_kosenttype import SENTENCE_TYPES
from .errors import KoSentTypeError, one_line

# The side files looked for beside the checkpoint when not named explicitly (load_spec.json has no option).
DEFAULT_SIDE_FILES = {
    "tokenizer": "tokenizer",
    "label_mapping": "label_mapping.json",
    "metrics": "best_metrics.json",
    "export_config": "hf_export_config.json",
    "load_spec": "load_spec.json",
}
LABEL_KEYS = ("id2label", "label2id", "labels", "label_names", "classes", "label_mapping")
TRAINING_SECTION_KEYS = ("training", "training_args", "hyperparameters", "hparams", "train")
METRIC_ALIASES = {
    "accuracy": ("accuracy", "acc"),
    "macro_f1": ("macro_f1", "f1_macro", "macro_avg_f1"),
    "weighted_f1": ("weighted_f1", "f1_weighted", "weighted_avg_f1"),
}
AVERAGES = ("macro", "weighted")
METRIC_PREFIX = re.compile(r"^(eval|val|valid|validation|test|best|holdout)_")
PER_LABEL_SCORES = ("precision", "recall", "f1", "support")


@dataclass
class RunFiles:
    """The inputs, with the optional side files resolved to paths that exist (or None)."""

    checkpoint: Path
    tokenizer: Path | None
    label_mapping: Path | None
    metrics: Path | None
    export_config: Path | None
    load_spec: Path | None

    def inputs(self) -> list[Path]:
        return [path for path in vars(self).values() if path is not None]


def resolve_run_files(checkpoint: str | os.PathLike, given: Mapping[str, str | None]) -> RunFiles:
    """Explicitly named files must exist; default-named ones beside the checkpoint are used when present."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise KoSentTypeError(f"{checkpoint}: checkpoint not found")
    resolved = {}
    for name, default_name in DEFAULT_SIDE_FILES.items():
        named = given.get(name)
        if named is not None and not Path(named).exists():
            raise KoSentTypeError(f"{named}: --{name.replace('_', '-')} not found")
        default = checkpoint.parent / default_name
        resolved[name] = Path(named) if named is not None else default if default.exists() else None
    return RunFiles(checkpoint=checkpoint, **resolved)


def read_side_files(files: RunFiles) -> dict[str, Any]:
    """The JSON side files by name, as read (None where absent)."""
    side = {}
    for name in list(DEFAULT_SIDE_FILES)[1:]:
        path = getattr(files, name)
        try:
            side[name] = None if path is None else json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise KoSentTypeError(f"{path}: not readable JSON ({one_line(error)})") from None
    return side


@dataclass
class RunSettings:
    """The run's settings from every place a training script keeps them, most trusted first: [(source, mapping)]."""

    sources: list[tuple[str, Mapping]]

    @classmethod
    def collect(cls, files: RunFiles, side: dict[str, Any], checkpoint_args: Any) -> RunSettings:
        """hf_export_config.json, then load_spec.json, then the checkpoint's own `args` (a dict or a Namespace)."""
        candidates = [
            (str(files.export_config), side["export_config"]),
            (str(files.load_spec), side["load_spec"]),
            (f"{files.checkpoint} ['args']", getattr(checkpoint_args, "__dict__", checkpoint_args)),
        ]
        return cls([(source, values) for source, values in candidates if isinstance(values, Mapping)])

    def first(self, keys: tuple[str, ...], kind: type | tuple[type, ...]) -> tuple[Any, str]:
        """The first value of the right type under any of `keys` and where it was found (`FILE ['key']`)."""
        for source, values in self.sources:
            for key in keys:
                value = values.get(key)
                if isinstance(value, kind) and not isinstance(value, bool):
                    return value, f"{source} ['{key}']"
        return None, ""


def load_tokenizer(files: RunFiles, backbone: str | None) -> tuple[PreTrainedTokenizerBase, str]:
    """The run's tokenizer (RUN/tokenizer or --tokenizer), else the backbone's; and where it came from."""
    source = str(files.tokenizer) if files.tokenizer is not None else backbone
    if source is None:
        raise KoSentTypeError(f"no tokenizer: no {files.checkpoint.parent / 'tokenizer'}; pass --tokenizer DIR")
    try:
        return AutoTokenizer.from_pretrained(source), source
    except Exception as error:
        hint = "" if files.tokenizer is not None else " (pass --tokenizer DIR)"
        raise KoSentTypeError(f"{source}: tokenizer could not be loaded{hint}: {one_line(error, 200)}") from None


def _is_int_like(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


def labels_from(value: Any, source: str) -> list[str] | None:
    """Label names in id order from {label2id, id2label}, a flat name→id or id→name dict, or a list."""
    if value is None:
        return None
    if isinstance(value, Mapping) and ("label2id" in value or "id2label" in value):
        orders = [
            labels_from(value[key], f"{source} {key}") for key in ("id2label", "label2id") if value.get(key) is not None
        ]
        if len(orders) == 2 and orders[0] != orders[1]:
            raise KoSentTypeError(f"{source}: id2label {orders[0]} and label2id {orders[1]} disagree")
        return orders[0]
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        by_index = dict(enumerate(value))
    elif isinstance(value, Mapping) and value and all(_is_int_like(index) for index in value.values()):
        by_index = {int(index): str(name) for name, index in value.items()}
    elif isinstance(value, Mapping) and value and all(_is_int_like(index) for index in value):
        by_index = {int(index): str(name) for index, name in value.items()}
    else:
        raise KoSentTypeError(f"{source}: unrecognised label mapping (expected label2id/id2label, a dict or a list)")
    if sorted(by_index) != list(range(len(by_index))) or len(set(by_index.values())) != len(by_index):
        raise KoSentTypeError(f"{source}: label ids must be 0..{len(by_index) - 1} with unique names, got {by_index}")
    return [by_index[index] for index in range(len(by_index))]


def resolve_labels(
    files: RunFiles, label_mapping: Any, checkpoint_extras: Mapping, num_outputs: int
) -> tuple[list[str], str]:
    """Every source of labels must agree with the others and with the head's size; the seed's order otherwise."""
    sources = []
    if label_mapping is not None:
        sources.append((str(files.label_mapping), labels_from(label_mapping, str(files.label_mapping))))
    for key in LABEL_KEYS:
        if isinstance(checkpoint_extras.get(key), (Mapping, list, tuple)):  # not e.g. 'classes': 4
            where = f"{files.checkpoint} ['{key}']"
            sources.append((where, labels_from(checkpoint_extras[key], where)))
            break
    if len(sources) == 2 and sources[0][1] != sources[1][1]:  # the label mapping file and the checkpoint's own
        (first_source, first), (other_source, other) = sources
        raise KoSentTypeError(f"labels disagree: {first_source} has {first}, {other_source} has {other}")
    labels, origin = (sources[0][1], " and ".join(s for s, _ in sources)) if sources else (list(SENTENCE_TYPES), "")
    if len(labels) != num_outputs:
        raise KoSentTypeError(
            f"{origin or 'the default'} has {len(labels)} labels {labels}, but the checkpoint's head has {num_outputs}"
        )
    return labels, origin or "the seed's fixed order: no label mapping found"


def _f1(entry: Any) -> Any:
    return entry.get("f1-score", entry.get("f1")) if isinstance(entry, Mapping) else None


def normalize_metrics(raw: Any, labels: list[str]) -> dict:
    """The model card's metrics from the usual shapes: flat scores, possibly prefixed eval_/val_/best_, and
    sklearn's classification_report dict, top-level or nested."""
    if not isinstance(raw, Mapping):
        return {}
    flat = {METRIC_PREFIX.sub("", re.sub(r"[\s\-]+", "_", str(key).lower())): value for key, value in raw.items()}
    nested = [value for key, value in flat.items() if key in ("report", "classification_report")]
    report = next((value for value in nested if isinstance(value, Mapping)), raw)
    averages = {"accuracy": report.get("accuracy"), **{f"{a}_f1": _f1(report.get(f"{a} avg")) for a in AVERAGES}}
    metrics: dict[str, Any] = {}
    for name, aliases in METRIC_ALIASES.items():
        value = next((flat[a] for a in aliases if isinstance(flat.get(a), (int, float))), averages[name])
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)
    per_label = _per_label_scores(report, labels) or _per_label_scores(flat.get("per_label") or {}, labels)
    if per_label:
        metrics["per_label"] = per_label
    dataset, _ = RunSettings([("metrics", raw)]).first(("eval_dataset", "dataset", "split"), str)
    if dataset:
        metrics["eval_dataset"] = dataset
    return metrics


def _per_label_scores(report: Mapping, labels: list[str]) -> dict[str, dict]:
    per_label = {}
    for index, label in enumerate(labels):
        entry = report.get(label, report.get(str(index)))
        if isinstance(entry, Mapping):
            scores = {**entry, "f1": _f1(entry)}
            per_label[label] = {key: scores[key] for key in PER_LABEL_SCORES if scores.get(key) is not None}
    return per_label


def training_procedure_from(export_config: Any) -> dict[str, Any]:
    """The hyper-parameters worth publishing: scalar settings, not labels or this machine's paths."""
    if not isinstance(export_config, Mapping):
        return {}
    sections = [export_config] + [export_config[key] for key in TRAINING_SECTION_KEYS if key in export_config]
    settings = [item for section in sections if isinstance(section, Mapping) for item in section.items()]
    return {
        key: value
        for key, value in settings
        if key not in LABEL_KEYS
        and isinstance(value, (str, int, float, bool))
        and not (isinstance(value, str) and (os.path.isabs(value) or value.startswith(("~", "./", "../"))))
    }
