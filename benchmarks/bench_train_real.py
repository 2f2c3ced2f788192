"""Training on real labelled data: does the class weighting + weighted sampler help, and how does a small encoder
trained from scratch compare with the baseline anyone could pick (TF-IDF character n-grams + logistic regression)?

    python benchmarks/bench_train_real.py [--quick] [--ablation] [--epochs N] [--hidden N] [--layers N] [--json FILE]

Data: ../shared/data/dacon/train.csv (read-only, never copied into the project; the benchmark skips when it is
absent). Its exact duplicates are dropped and sentences whose copies disagree on the type are dropped entirely
(see the data README), then a fixed stratified split (seed 42): 80% train, of which 10% validation (best checkpoint
by macro-F1), and 20% test, on which every figure below is measured. With no pretrained Korean encoder reachable
here, the neural model is a small RoBERTa trained from scratch on the CPU, with a WordPiece tokenizer built from the
training part, through train_hf's own argument parser and train(), exactly as the command line runs it. The
machine is shared with other jobs: examples/s are indicative.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_common import fixed_split
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from transformers.utils import logging as transformers_logging

from kosenttype import SENTENCE_TYPES
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.labelled_data import Example, read_labelled_file
from kosenttype.metrics import classification_metrics
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer
from kosenttype.train_hf import parse_arguments, train

DACON_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "dacon" / "train.csv"
SEED = 42
MAX_LENGTH = 128
VOCAB_SIZE = 8000
NEURAL_VARIANTS = {
    "encoder, weighted CE + sampler": ("balanced", True),
    "encoder, plain CE + shuffling": ("none", False),
}
ABLATION_VARIANTS = {
    "encoder, weighted CE only": ("balanced", False),
    "encoder, sampler only": ("none", True),
}


def deduplicated(examples: list[Example]) -> tuple[list[Example], int, int]:
    """One copy of each sentence; none of a sentence whose copies carry different types."""
    labels_by_text: dict[str, set[int]] = defaultdict(set)
    for example in examples:
        labels_by_text[example.text].add(example.label)
    conflicting = {text for text, labels in labels_by_text.items() if len(labels) > 1}
    kept = [Example(text, labels.pop()) for text, labels in labels_by_text.items() if text not in conflicting]
    return kept, len(examples) - len(labels_by_text), len(conflicting)


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    rows = (json.dumps({"sentence": e.text, "label": e.label}, ensure_ascii=False) + "\n" for e in examples)
    path.write_text("".join(rows), encoding="utf-8")
    return path


def run_encoder(
    folder: Path, files: dict[str, Path], weighting: str, sampler: bool, options: argparse.Namespace
) -> dict:
    """One train_hf.train() run; returns the test metrics and the measured speeds."""
    output = folder / f"run_{weighting}_{sampler}"
    encoder = tiny_encoder_config(VOCAB_SIZE, options.hidden, options.layers, max_length=MAX_LENGTH)
    model_args, data_args, training_args = parse_arguments(
        [
            "--encoder_config", json.dumps(encoder),
            "--tokenizer_name", str(folder / "tokenizer"),
            "--train_file", str(files["train"]),
            "--validation_file", str(files["validation"]),
            "--test_file", str(files["test"]),
            "--max_seq_length", str(MAX_LENGTH),
            "--class_weighting", weighting,
            "--weighted_sampler", str(sampler),
            "--output_dir", str(output),
            "--num_train_epochs", str(options.epochs),
            "--learning_rate", str(options.learning_rate),
            "--per_device_eval_batch_size", "128",
            "--use_cpu", "true",
            "--disable_tqdm", "true",
            "--save_total_limit", "1",
            "--logging_strategy", "epoch",
            "--seed", str(SEED),
        ]
    )  # fmt: skip
    results = train(model_args, data_args, training_args)
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


def run_tfidf(split: dict[str, list[Example]], class_weight: str | None) -> dict:
    """Character 1-3-grams within word boundaries, sublinear tf, logistic regression (fit on the train part)."""
    texts = {name: [example.text for example in examples] for name, examples in split.items()}
    labels = {name: [example.label for example in examples] for name, examples in split.items()}
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    classifier = LogisticRegression(max_iter=2000, C=4.0, class_weight=class_weight)
    classifier.fit(vectorizer.fit_transform(texts["train"]), labels["train"])
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = classifier.predict(vectorizer.transform(texts["test"]))
    predict_seconds = time.perf_counter() - started
    return {
        **classification_metrics(labels["test"], predicted, SENTENCE_TYPES),
        "train_examples_per_s": len(texts["train"]) / fit_seconds,
        "predict_examples_per_s": len(texts["test"]) / predict_seconds,
        "epochs_trained": None,
        "train_seconds": fit_seconds,
    }


def print_table(results: dict[str, dict], test_size: int) -> None:
    recall_header = " ".join(f"R:{label}" for label in SENTENCE_TYPES)
    print(f"\ntest split: {test_size} sentences")
    print(f"{'variant':<34} {'acc':>6} {'macroF1':>7} {'wF1':>6}  {recall_header}  {'train ex/s':>10} {'pred ex/s':>9}")
    for name, metrics in results.items():
        recalls = " ".join(f"{metrics['per_label'][label]['recall']:>7.3f}" for label in SENTENCE_TYPES)
        print(
            f"{name:<34} {metrics['accuracy']:>6.4f} {metrics['macro_f1']:>7.4f} {metrics['weighted_f1']:>6.4f}  "
            f"{recalls}  {metrics['train_examples_per_s']:>10.1f} {metrics['predict_examples_per_s']:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 epoch instead of 3 (about 2 minutes)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a contended machine)")
    parser.add_argument("--ablation", action="store_true", help="also each half alone: weighted CE, sampler")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    options = parser.parse_args()
    if options.quick:
        options.epochs = 1
    if not DACON_TRAIN.is_file():
        print(f"skipped: {DACON_TRAIN} is not on this machine")
        return
    torch.set_num_threads(options.threads)
    transformers_logging.set_verbosity_warning()
    examples, duplicates, conflicting = deduplicated(read_labelled_file(DACON_TRAIN, SENTENCE_TYPES))
    split = fixed_split(examples)
    print(
        f"{DACON_TRAIN.name}: {len(examples)} sentences after dropping {duplicates} repeated copies and "
        f"{conflicting} sentences with conflicting types; split "
        + ", ".join(f"{name} {len(part)}" for name, part in split.items())
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        files = {name: write_jsonl(folder / f"{name}.jsonl", part) for name, part in split.items()}
        tokenizer = train_wordpiece_tokenizer((example.text for example in split["train"]), vocab_size=VOCAB_SIZE)
        save_tokenizer_for_hub(tokenizer, folder / "tokenizer", max_length=MAX_LENGTH)
        variants = {**NEURAL_VARIANTS, **(ABLATION_VARIANTS if options.ablation else {})}
        for name, (weighting, sampler) in variants.items():
            results[name] = run_encoder(folder, files, weighting, sampler, options)
    results["TF-IDF char 1-3 + LogReg"] = run_tfidf(split, None)
    results["TF-IDF char 1-3 + LogReg balanced"] = run_tfidf(split, "balanced")
    print(
        f"\nencoder: RoBERTa from scratch, {options.layers} layers, hidden {options.hidden}, vocabulary {VOCAB_SIZE}, "
        f"max length {MAX_LENGTH}; up to {options.epochs:g} epochs, lr {options.learning_rate}, batch 32, "
        f"torch threads {options.threads}; R: = recall per type"
    )
    print_table(results, len(split["test"]))
    if options.json:
        options.json.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
