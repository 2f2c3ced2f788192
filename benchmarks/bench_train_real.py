"""Training on real labelled data: small RoBERTa encoders trained from scratch through kosenttype-train on a fixed
split, against TF-IDF character n-grams + logistic regression. By default: do the class weighting and the weighted
sampler help? With --attributes: what the attribute heads (polarity, tense, certainty) learn, and what they cost
against a type-only model trained the same way. Set-up: docs/benchmarks.md.

    python benchmarks/bench_train_real.py [--quick] [--ablation] [--epochs N] [--hidden N] [--layers N] [--json FILE]
    python benchmarks/bench_train_real.py --attributes [--attribute_loss_weight W] [--repeats N] [--epochs N] ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_common import DACON_CSV, SHARED_DATA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from transformers.utils import logging as transformers_logging

from kosenttype import ATTRIBUTE_LABELS, SENTENCE_TYPES
from kosenttype.engine import load_classifier
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.labelled_data import Example, attribute_axes, read_labelled_file
from kosenttype.metrics import classification_metrics
from kosenttype.prepare_aihub import prepare
from kosenttype.reporting import combined_labels
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer
from kosenttype.tables import format_table
from kosenttype.train_hf import PACKAGE_FOLDER, parse_arguments, train

AIHUB_ARCHIVE = SHARED_DATA / "aihub" / "TL_뉴스_금융.zip"
AXES = attribute_axes(list(ATTRIBUTE_LABELS))  # polarity, tense, certainty with their labels, in head order
MAX_LENGTH = 128
VOCAB_SIZE = 8000
SEED = 42
NEURAL_VARIANTS = {
    "encoder, weighted CE + sampler": ("balanced", True),
    "encoder, plain CE + shuffling": ("none", False),
}
ABLATION_VARIANTS = {
    "encoder, weighted CE only": ("balanced", False),
    "encoder, sampler only": ("none", True),
}


def encoder_summary(options: argparse.Namespace) -> str:
    return (
        f"RoBERTa from scratch, {options.layers} layers, hidden {options.hidden}, vocabulary {VOCAB_SIZE}, "
        f"max length {MAX_LENGTH}; up to {options.epochs:g} epochs, lr {options.learning_rate}, batch 32"
    )


def deduplicated(examples: list) -> tuple[list, int, int]:
    """One copy of each sentence; none of a sentence whose copies disagree on the type or any attribute.
    Returns (kept examples, repeated copies dropped, conflicting sentences dropped)."""
    labels_by_text: dict[str, set[tuple]] = defaultdict(set)
    for example in examples:
        labels_by_text[example.text].add((example.label, example.attributes))
    conflicting = {text for text, labels in labels_by_text.items() if len(labels) > 1}
    kept = [Example(text, *next(iter(labels))) for text, labels in labels_by_text.items() if text not in conflicting]
    return kept, len(examples) - len(labels_by_text), len(conflicting)


def fixed_split(examples: list, seed: int = SEED) -> dict[str, list]:
    """80% train (of which 10% validation) and 20% test, stratified by each example's `.label`."""
    rest, test = train_test_split(examples, test_size=0.2, random_state=seed, stratify=[e.label for e in examples])
    train_part, validation = train_test_split(rest, test_size=0.1, random_state=seed, stratify=[e.label for e in rest])
    return {"train": train_part, "validation": validation, "test": test}


def training_files(folder: Path, split: dict[str, list], axes: dict[str, list[str]]) -> dict[str, Path]:
    """Each part as prepare_aihub.py's JSON lines (sentence, type, each axis by name), and a WordPiece tokenizer
    fitted on the train part in folder/tokenizer."""
    files = {}
    for name, part in split.items():
        rows = []
        for example in part:
            row = {"sentence": example.text, "label": SENTENCE_TYPES[example.label]}
            row.update({axis: axes[axis][value] for axis, value in zip(axes, example.attributes, strict=True)})
            rows.append(json.dumps(row, ensure_ascii=False) + "\n")
        files[name] = folder / f"{name}.jsonl"
        files[name].write_text("".join(rows), encoding="utf-8")
    tokenizer = train_wordpiece_tokenizer((example.text for example in split["train"]), vocab_size=VOCAB_SIZE)
    save_tokenizer_for_hub(tokenizer, folder / "tokenizer", max_length=MAX_LENGTH)
    return files


def train_encoder(folder: Path, files: dict[str, Path], output: Path, options: argparse.Namespace, *extra: str):
    """One train_hf.train() run, exactly as `kosenttype-train` runs it: (its results, its TrainingArguments)."""
    encoder = tiny_encoder_config(VOCAB_SIZE, options.hidden, options.layers, max_length=MAX_LENGTH)
    argv = [
        "--encoder_config", json.dumps(encoder),
        "--tokenizer_name", str(folder / "tokenizer"),
        "--train_file", str(files["train"]),
        "--validation_file", str(files["validation"]),
        "--test_file", str(files["test"]),
        "--max_seq_length", str(MAX_LENGTH),
        "--output_dir", str(output),
        "--num_train_epochs", str(options.epochs),
        "--learning_rate", str(options.learning_rate),
        "--per_device_eval_batch_size", "128",
        "--use_cpu", "true",
        "--disable_tqdm", "true",
        "--save_total_limit", "1",
        "--logging_strategy", "epoch",
        "--seed", str(SEED),
        *extra,
    ]  # fmt: skip
    arguments = parse_arguments(argv)
    return train(*arguments), arguments[2]


def aihub_examples(archive: Path) -> list[Example]:
    """The archive's sentences whose four labels are all known, as examples (label ids in head order)."""
    examples = []
    for record in prepare([archive], keep_conflicts=True).records:
        try:
            ids = tuple(labels.index(record.get(axis)) for axis, labels in AXES.items())
        except ValueError:  # a missing or unknown value on some axis
            continue
        if record["label"] in SENTENCE_TYPES:
            examples.append(Example(record["sentence"], SENTENCE_TYPES.index(record["label"]), ids))
    return examples


def run_encoder(folder: Path, files: dict[str, Path], weighting: str, sampler: bool, options) -> dict:
    """One training run; the test metrics and the measured speeds."""
    output = folder / f"run_{weighting}_{sampler}"
    weighting_options = ("--class_weighting", weighting, "--weighted_sampler", str(sampler))
    results, training_args = train_encoder(folder, files, output, options, *weighting_options)
    state = json.loads((output / "trainer_state.json").read_text(encoding="utf-8"))
    test_speed = json.loads((output / "test_results.json").read_text(encoding="utf-8"))["test_samples_per_second"]
    trained = state["global_step"] * training_args.per_device_train_batch_size
    return {
        **results["test"],
        "train_examples_per_s": trained / results["train"]["train_runtime"],
        "predict_examples_per_s": test_speed,
        "epochs_trained": results["train"]["epoch"],
        "train_seconds": results["train"]["train_runtime"],
    }


def tfidf_per_head(split: dict[str, list], class_weight: str | None, axes: dict) -> tuple[dict, dict]:
    """Character 1-3-grams within word boundaries, sublinear tf, logistic regression: the baseline anyone could pick,
    one per head (the type, then each axis). Each head's test metrics with its speeds, and its test predictions."""
    heads = {"type": (SENTENCE_TYPES, lambda example: example.label)}
    for index, (axis, labels) in enumerate(axes.items()):
        heads[axis] = (labels, lambda example, index=index: example.attributes[index])
    texts = {part: [example.text for example in split[part]] for part in ("train", "test")}
    metrics, predictions = {}, {}
    for head, (labels, value) in heads.items():
        started = time.perf_counter()
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        classifier = make_pipeline(vectorizer, LogisticRegression(max_iter=2000, C=4.0, class_weight=class_weight))
        classifier.fit(texts["train"], [value(example) for example in split["train"]])
        fitted = time.perf_counter()
        predictions[head] = classifier.predict(texts["test"])
        metrics[head] = {
            **classification_metrics([value(example) for example in split["test"]], predictions[head], labels),
            "train_examples_per_s": len(texts["train"]) / (fitted - started),
            "predict_examples_per_s": len(texts["test"]) / (time.perf_counter() - fitted),
            "epochs_trained": None,
            "train_seconds": fitted - started,
        }
    return metrics, predictions


def prediction_seconds(packages: dict[str, Path], texts: list[str], repeats: int) -> dict[str, float]:
    """Median wall time of the engine (fp32) classifying `texts`, tokenization included, the models timed in turn so
    that both see the same load on a shared machine; a first pass warms up (allocator, kernels), not counted."""
    classifiers = {name: load_classifier(path, device="cpu", precision="fp32") for name, path in packages.items()}
    times: dict[str, list[float]] = {name: [] for name in packages}
    for repeat in range(repeats + 1):
        for name, classifier in classifiers.items():
            started = time.perf_counter()
            list(classifier.classify(texts, max_length=MAX_LENGTH))
            if repeat:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def weighting_comparison(folder: Path, files: dict[str, Path], split: dict[str, list], options) -> dict:
    results = {}
    for name, (weighting, sampler) in {**NEURAL_VARIANTS, **(ABLATION_VARIANTS if options.ablation else {})}.items():
        results[name] = run_encoder(folder, files, weighting, sampler, options)
    for name, class_weight in (("TF-IDF char 1-3 + LogReg", None), ("TF-IDF char 1-3 + LogReg balanced", "balanced")):
        results[name] = tfidf_per_head(split, class_weight, {})[0]["type"]
    print(f"\nencoder: {encoder_summary(options)}, torch threads {options.threads}; R: = recall per type")
    print(f"\ntest split: {len(split['test'])} sentences")
    recalls = [f"R:{label}" for label in SENTENCE_TYPES]
    header = ["variant", "acc", "macroF1", "wF1", *recalls, "train ex/s", "pred ex/s"]
    rows = [
        [
            name,
            metrics["accuracy"],
            metrics["macro_f1"],
            metrics["weighted_f1"],
            *(f"{metrics['per_label'][label]['recall']:.3f}" for label in SENTENCE_TYPES),
            f"{metrics['train_examples_per_s']:.1f}",
            f"{metrics['predict_examples_per_s']:.1f}",
        ]
        for name, metrics in results.items()
    ]
    print(format_table(header, rows))
    return results


def attribute_comparison(folder: Path, files: dict[str, Path], split: dict[str, list], options) -> dict:
    results = {}
    balanced = ("--class_weighting", "balanced", "--no_weighted_sampler")
    heads = ("--attribute_columns", ",".join(AXES), "--attribute_loss_weight", str(options.attribute_loss_weight))
    for name, extra in (("joint", (*balanced, *heads)), ("type_only", balanced)):
        started = time.perf_counter()
        outcome, _ = train_encoder(folder, files, folder / name, options, *extra)
        results[name] = {**outcome["test"], "train_seconds": time.perf_counter() - started}
    packages = {name: folder / name / PACKAGE_FOLDER for name in results}
    seconds = prediction_seconds(packages, [example.text for example in split["test"]], options.repeats)
    metrics, predictions = tfidf_per_head(split, "balanced", AXES)
    test = split["test"]
    types, *axis_predictions = predictions.values()
    truth = combined_labels([e.label for e in test], [e.attributes for e in test], SENTENCE_TYPES, AXES)
    guess = combined_labels(types, list(zip(*axis_predictions, strict=True)), SENTENCE_TYPES, AXES)
    tfidf = {
        "axes": metrics,
        "combined_exact_match": float(accuracy_score(truth, guess)),
        "dacon_weighted_f1": float(f1_score(truth, guess, average="weighted", zero_division=0)),
    }
    print(
        f"\nencoders: {encoder_summary(options)}, balanced class weights, no sampler; attribute loss weight "
        f"{options.attribute_loss_weight:g}; torch threads {options.threads}"
    )
    joint, type_only, test_size = results["joint"], results["type_only"], len(split["test"])
    rows = [["type", joint["macro_f1"], type_only["macro_f1"], tfidf["axes"]["type"]["macro_f1"]]]
    for axis in AXES:
        rows.append([axis, joint["attributes"][axis]["macro_f1"], "-", tfidf["axes"][axis]["macro_f1"]])
    rows.append(["combined exact match", joint["combined_exact_match"], "-", tfidf["combined_exact_match"]])
    rows.append(["DACON weighted F1", joint["dacon_weighted_f1"], "-", tfidf["dacon_weighted_f1"]])
    print(f"\ntest part: {test_size} sentences; macro-F1 per axis")
    print(format_table(["", "joint model", "type-only model", "TF-IDF + LogReg"], rows))
    speeds = {name: test_size / value for name, value in seconds.items()}
    figures = {
        "type_macro_f1_cost": type_only["macro_f1"] - joint["macro_f1"],
        "prediction_slowdown": seconds["joint"] / seconds["type_only"] - 1,
        "sentences_per_second": speeds,
    }
    print(
        f"\ncost of the heads: type macro-F1 {figures['type_macro_f1_cost']:+.4f} (type-only minus joint); "
        f"prediction {speeds['joint']:.0f} vs {speeds['type_only']:.0f} sentences/s "
        f"({figures['prediction_slowdown']:+.1%} time)"
    )
    return {**results, "tfidf": tfidf, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch instead of 3 (about 2 minutes)")
    parser.add_argument("--ablation", action="store_true", help="also each half alone: weighted CE, sampler")
    parser.add_argument("--attributes", action="store_true", help="the attribute heads' comparison (with AI Hub data)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="--attributes: timed passes over the test part, per model"
    )
    parser.add_argument(
        "--attribute_loss_weight", type=float, default=1.0, help="each axis's weight in the joint model's loss"
    )
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a contended machine)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    options = parser.parse_args()
    if options.quick:
        options.epochs = 1
    sources = [DACON_CSV, AIHUB_ARCHIVE] if options.attributes else [DACON_CSV]
    if missing := [str(path) for path in sources if not path.is_file()]:
        print(f"skipped: {' and '.join(missing)} not on this machine")
        return
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    transformers_logging.set_verbosity_warning()
    axes = AXES if options.attributes else {}
    parts = {DACON_CSV.name: read_labelled_file(DACON_CSV, SENTENCE_TYPES, attributes=axes or None)}
    if options.attributes:
        parts[AIHUB_ARCHIVE.name] = aihub_examples(AIHUB_ARCHIVE)
    examples, duplicates, conflicting = deduplicated([example for part in parts.values() for example in part])
    split = fixed_split(examples)
    print(
        " + ".join(f"{name} {len(part)}" for name, part in parts.items())
        + f" sentences: {len(examples)} after dropping {duplicates} repeated copies and {conflicting} sentences "
        "whose copies disagree; split " + ", ".join(f"{name} {len(part)}" for name, part in split.items())
    )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        files = training_files(folder, split, axes)
        results = (attribute_comparison if options.attributes else weighting_comparison)(folder, files, split, options)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if options.json:
        options.json.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
