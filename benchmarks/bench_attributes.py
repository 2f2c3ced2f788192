"""Four axes from one encoder: what the attribute heads (polarity, tense, certainty) learn, and what they cost.

    python benchmarks/bench_attributes.py [--epochs N] [--hidden N] [--layers N] [--threads N] [--json FILE]

Data: ../shared/data/dacon/train.csv and ../shared/data/aihub/TL_뉴스_금융.zip (read in place, never copied into
the project; the benchmark skips when they are absent), pooled and deduplicated on the sentence: a sentence whose
copies disagree on any of the four axes is dropped, the others kept once. A fixed split stratified by type (seed
42): 80% train, of which 10% validation (best epoch by type macro-F1), and 20% test, where every figure is measured.

Compared, on the test part:
- the joint model: a small RoBERTa trained from scratch with `kosenttype-train --attribute_columns
  polarity,tense,certainty` (type loss + each axis's class-weighted cross-entropy);
- the type-only model, trained the same way without the heads: the cost of the heads in type macro-F1 and in
  prediction speed (same batches, both models timed alternately, median of the repeats);
- TF-IDF character 1-3-grams + logistic regression (class-balanced), one per axis: the baseline anyone could pick.

Both encoders use `--class_weighting balanced --no_weighted_sampler` (the best from-scratch setting in
bench_train_real.py) and are trained through train_hf's own parser and train(). The machine is shared with other
jobs: speeds are indicative; their ratio is measured in the same run.
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
from bench_common import fixed_split
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as transformers_logging

from kosenttype import ATTRIBUTE_LABELS, SENTENCE_TYPES
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.labelled_data import Example, attribute_axes, read_labelled_file
from kosenttype.metrics import classification_metrics
from kosenttype.prepare_aihub import prepare
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer
from kosenttype.tables import format_table
from kosenttype.train_hf import PACKAGE_FOLDER, parse_arguments, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DACON_TRAIN = SHARED / "dacon" / "train.csv"
AIHUB_ARCHIVE = SHARED / "aihub" / "TL_뉴스_금융.zip"
AXES = attribute_axes(list(ATTRIBUTE_LABELS))  # polarity, tense, certainty with their labels, in head order
SEED = 42
MAX_LENGTH = 128
VOCAB_SIZE = 8000


def aihub_examples(archive: Path) -> list[Example]:
    """The archive's sentences whose four labels are all known, as examples (label ids in head order)."""
    examples = []
    for record in prepare([archive], keep_conflicts=True).records:
        values = [record.get(axis) for axis in AXES]
        if record["label"] in SENTENCE_TYPES and all(
            value in labels for value, labels in zip(values, AXES.values(), strict=True)
        ):
            ids = tuple(labels.index(value) for value, labels in zip(values, AXES.values(), strict=True))
            examples.append(Example(record["sentence"], SENTENCE_TYPES.index(record["label"]), ids))
    return examples


def deduplicated(examples: list[Example]) -> tuple[list[Example], int, int]:
    """One copy of each sentence; none of a sentence whose copies disagree on any axis."""
    labels_by_text: dict[str, set[tuple]] = defaultdict(set)
    for example in examples:
        labels_by_text[example.text].add((example.label, example.attributes))
    conflicting = {text for text, labels in labels_by_text.items() if len(labels) > 1}
    kept = [Example(text, *next(iter(labels))) for text, labels in labels_by_text.items() if text not in conflicting]
    return kept, len(examples) - len(labels_by_text), len(conflicting)


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    """prepare_aihub.py's layout: sentence, label and the three axes by their English names."""
    lines = []
    for example in examples:
        row = {"sentence": example.text, "label": SENTENCE_TYPES[example.label]}
        row.update(
            {axis: labels[value] for (axis, labels), value in zip(AXES.items(), example.attributes, strict=True)}
        )
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def train_encoder(folder: Path, files: dict[str, Path], joint: bool, options: argparse.Namespace) -> dict:
    """One kosenttype-train run (joint or type-only); the test metrics and the package's folder."""
    output = folder / ("joint" if joint else "type_only")
    encoder = tiny_encoder_config(VOCAB_SIZE, options.hidden, options.layers, max_length=MAX_LENGTH)
    argv = [
        "--encoder_config", json.dumps(encoder),
        "--tokenizer_name", str(folder / "tokenizer"),
        "--train_file", str(files["train"]),
        "--validation_file", str(files["validation"]),
        "--test_file", str(files["test"]),
        "--max_seq_length", str(MAX_LENGTH),
        "--class_weighting", "balanced",
        "--no_weighted_sampler",
        "--output_dir", str(output),
        "--num_train_epochs", str(options.epochs),
        "--learning_rate", str(options.learning_rate),
        "--per_device_eval_batch_size", "128",
        "--use_cpu", "true",
        "--disable_tqdm", "true",
        "--save_total_limit", "1",
        "--logging_strategy", "epoch",
        "--seed", str(SEED),
    ]  # fmt: skip
    if joint:
        argv += ["--attribute_columns", ",".join(AXES), "--attribute_loss_weight", str(options.attribute_loss_weight)]
    started = time.perf_counter()
    results = train(*parse_arguments(argv))
    return {**results["test"], "train_seconds": time.perf_counter() - started, "package": output / PACKAGE_FOLDER}


def prediction_seconds(packages: dict[str, Path], texts: list[str], repeats: int) -> dict[str, float]:
    """Median wall time to classify `texts` (tokenization included, batches of 64 in length order), each model
    timed in turn so that both see the same load on a shared machine."""
    models = {name: AutoModelForSequenceClassification.from_pretrained(path).eval() for name, path in packages.items()}
    tokenizers = {name: AutoTokenizer.from_pretrained(path) for name, path in packages.items()}
    ordered = sorted(texts, key=len)
    times: dict[str, list[float]] = {name: [] for name in packages}
    for repeat in range(repeats + 1):  # the first pass warms up (allocator, kernels) and is not counted
        for name in packages:
            started = time.perf_counter()
            with torch.inference_mode():
                for start in range(0, len(ordered), 64):
                    batch = tokenizers[name](
                        ordered[start : start + 64], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt",
                    )  # fmt: skip
                    models[name](**batch)
            if repeat:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def tfidf_per_axis(split: dict[str, list[Example]]) -> dict:
    """One class-balanced logistic regression per axis over shared TF-IDF character 1-3-gram features."""
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    features = vectorizer.fit_transform([example.text for example in split["train"]])
    test_features = vectorizer.transform([example.text for example in split["test"]])
    heads = {"type": (SENTENCE_TYPES, lambda example: example.label)}
    for index, (axis, labels) in enumerate(AXES.items()):
        heads[axis] = (labels, lambda example, index=index: example.attributes[index])
    metrics, predictions = {}, {}
    for head, (labels, value) in heads.items():
        classifier = LogisticRegression(max_iter=2000, C=4.0, class_weight="balanced")
        classifier.fit(features, [value(example) for example in split["train"]])
        predictions[head] = classifier.predict(test_features)
        metrics[head] = classification_metrics([value(example) for example in split["test"]], predictions[head], labels)
    truth = [combined(example.label, example.attributes) for example in split["test"]]
    guess = [
        combined(kind, attributes) for kind, *attributes in zip(*(predictions[head] for head in heads), strict=True)
    ]
    return {
        "axes": metrics,
        "combined_exact_match": float(accuracy_score(truth, guess)),
        "dacon_weighted_f1": float(f1_score(truth, guess, average="weighted", zero_division=0)),
    }


def combined(kind: int, attributes: tuple | list) -> str:
    values = [labels[value] for labels, value in zip(AXES.values(), attributes, strict=True)]
    return "-".join([SENTENCE_TYPES[kind], *values])


def report(joint: dict, type_only: dict, tfidf: dict, seconds: dict[str, float], test_size: int) -> dict:
    """Print the comparison and return its figures."""
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
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a contended machine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the test part, per model")
    parser.add_argument(
        "--attribute_loss_weight", type=float, default=1.0, help="each axis's weight in the joint model's loss"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    options = parser.parse_args()
    if not (DACON_TRAIN.is_file() and AIHUB_ARCHIVE.is_file()):
        print(f"skipped: {DACON_TRAIN} and {AIHUB_ARCHIVE} are not both on this machine")
        return
    started = time.perf_counter()
    torch.set_num_threads(options.threads)
    transformers_logging.set_verbosity_warning()
    dacon = read_labelled_file(DACON_TRAIN, SENTENCE_TYPES, attributes=AXES)
    aihub = aihub_examples(AIHUB_ARCHIVE)
    examples, duplicates, conflicting = deduplicated(dacon + aihub)
    split = fixed_split(examples)
    print(
        f"{DACON_TRAIN.name} {len(dacon)} + {AIHUB_ARCHIVE.name} {len(aihub)} sentences: {len(examples)} after "
        f"dropping {duplicates} repeated copies and {conflicting} sentences whose copies disagree; split "
        + ", ".join(f"{name} {len(part)}" for name, part in split.items())
    )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        files = {name: write_jsonl(folder / f"{name}.jsonl", part) for name, part in split.items()}
        tokenizer = train_wordpiece_tokenizer((example.text for example in split["train"]), vocab_size=VOCAB_SIZE)
        save_tokenizer_for_hub(tokenizer, folder / "tokenizer", max_length=MAX_LENGTH)
        joint = train_encoder(folder, files, joint=True, options=options)
        type_only = train_encoder(folder, files, joint=False, options=options)
        packages = {"joint": joint.pop("package"), "type_only": type_only.pop("package")}
        seconds = prediction_seconds(packages, [example.text for example in split["test"]], options.repeats)
    tfidf = tfidf_per_axis(split)
    print(
        f"\nencoders: RoBERTa from scratch, {options.layers} layers, hidden {options.hidden}, vocabulary {VOCAB_SIZE}, "
        f"max length {MAX_LENGTH}; up to {options.epochs:g} epochs, lr {options.learning_rate}, batch 32, balanced "
        f"class weights, no sampler; attribute loss weight {options.attribute_loss_weight:g}; "
        f"torch threads {options.threads}"
    )
    figures = report(joint, type_only, tfidf, seconds, len(split["test"]))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if options.json:
        results = {"joint": joint, "type_only": type_only, "tfidf": tfidf, **figures}
        options.json.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
