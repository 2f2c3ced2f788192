"""The offline quickstart: from the shipped sample sentences to a trained, Hub-ready model and its predictions.

A WordPiece tokenizer and a tiny RoBERTa are built from the sample set, trained by `kosenttype-train`, and used
through `pipeline` and `kosenttype-predict`, with no download. The --output-dir holds data/ (the split), tokenizer/
and encoder_config.json, checkpoints/ (the Trainer's run folder), model/ (the Hub package only) and the demo files;
it is built beside its destination and renamed into place when complete, so a failure leaves the previous one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import namedtuple
from pathlib import Path

from sklearn.model_selection import train_test_split
from transformers import pipeline

from kosenttype import predict, train_hf
from kosenttype.atomic_output import refuse_input_as_output, staged_folder, write_text_atomically
from kosenttype.errors import EXIT_OK, Interrupted, KoSentTypeError, run_command
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer

PROGRAM = "kosenttype-quickstart"

SAMPLE_DATA = Path(__file__).resolve().parent / "data" / "sample_sentences.jsonl"
# New sentences, written for this demo and absent from the sample set, one of each type.
DEMO_SENTENCES = [
    "시청 앞 광장에서 어제 저녁 겨울 축제 개막식이 열렸다.",
    "이번 매출 감소는 원자재 가격 상승이 겹친 결과로 풀이된다.",
    "새 지하철 노선은 내년 상반기에 개통될 예정이다.",
    "주말에 같이 영화 보러 갈래요?",
]
MAX_LENGTH = 128
# Everything the quickstart writes into its --output-dir; a folder holding anything else is not replaced.
OUTPUT_ENTRIES = frozenset(
    {"data", "tokenizer", "encoder_config.json", "checkpoints", "model", "demo_sentences.txt", "demo_predictions.jsonl"}
)
# How big the demo is: the full one finishes in under 3 minutes on 2 CPU cores; `--quick` is for tests.
QuickstartSettings = namedtuple("QuickstartSettings", "epochs hidden_size vocab_size")
FULL = QuickstartSettings(epochs=30, hidden_size=64, vocab_size=2000)
QUICK = QuickstartSettings(epochs=3, hidden_size=32, vocab_size=500)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("outputs/quickstart"),
        help="Where everything goes (replaced whole by a rerun; model/ is the Hub package).",
    )
    parser.add_argument("--quick", action="store_true", help="A few epochs of a smaller model (for tests).")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def write_splits(output_dir: Path, seed: int) -> dict[str, list[dict]]:
    """Stratified 70/15/15 split, as JSON Lines: training, validation (picks the best epoch) and an unseen test."""
    records = [json.loads(line) for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    train, rest = train_test_split(records, test_size=0.3, stratify=[r["label"] for r in records], random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=[r["label"] for r in rest], random_state=seed)
    parts = {"train": train, "validation": validation, "test": test}
    for name, part in parts.items():
        lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in part)
        write_text_atomically(output_dir / "data" / f"{name}.jsonl", lines)
    return parts


def stop_if_failed(command: str, status: int) -> None:
    """A command run inside this one has printed its own error line; stop here too, so the staged folder is removed
    (a plain return would move the half-made folder into place). A signal it caught is passed on as that signal."""
    if status > 128:
        raise Interrupted(status - 128)
    if status != EXIT_OK:
        raise KoSentTypeError(f"{command} failed with exit status {status} (its error is above)")


def build(workspace: Path, settings: QuickstartSettings, seed: int) -> None:
    """Split the data, build the tokenizer and toy encoder, train into `checkpoints/`, and move the Hub package that
    training writes there (`checkpoints/model/`) up to `model/`, out of the run folder, as the folder to publish."""
    parts = write_splits(workspace, seed)
    sentences = [record["sentence"] for record in parts["train"]]
    tokenizer = train_wordpiece_tokenizer(sentences, vocab_size=settings.vocab_size)
    save_tokenizer_for_hub(tokenizer, workspace / "tokenizer", max_length=MAX_LENGTH)
    encoder = tiny_encoder_config(len(tokenizer), hidden_size=settings.hidden_size, max_length=MAX_LENGTH)
    write_text_atomically(workspace / "encoder_config.json", json.dumps(encoder, indent=2) + "\n")
    data, run_dir = workspace / "data", workspace / "checkpoints"
    # A learning rate and batch size fit for a model trained from scratch.
    arguments = [
        "--encoder_config", str(workspace / "encoder_config.json"),
        "--tokenizer_name", str(workspace / "tokenizer"),
        "--train_file", str(data / "train.jsonl"),
        "--validation_file", str(data / "validation.jsonl"),
        "--test_file", str(data / "test.jsonl"),
        "--max_seq_length", str(MAX_LENGTH),
        "--output_dir", str(run_dir),
        "--num_train_epochs", str(settings.epochs),
        "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "16",
        "--early_stopping_patience", "8",
        "--save_total_limit", "1",
        "--logging_strategy", "epoch",
        "--disable_tqdm", "true",
        "--seed", str(seed),
        "--no_weighted_sampler",
    ]  # fmt: skip
    stop_if_failed("kosenttype-train", train_hf.main(arguments))
    os.replace(run_dir / train_hf.PACKAGE_FOLDER, workspace / "model")


def classify_demo_sentences(workspace: Path, shown: Path) -> None:
    """Both ways of using the result: the stock `pipeline` and the batch predictor, run on the folder being built
    (`workspace`) and shown with the paths it will have (`shown`)."""
    model_dir = workspace / "model"
    classifier = pipeline("text-classification", model=str(model_dir), trust_remote_code=True)
    print('\npipeline("text-classification", model=..., trust_remote_code=True):')
    for sentence, prediction in zip(DEMO_SENTENCES, classifier(DEMO_SENTENCES), strict=True):
        print(f"  {prediction['label']}  {prediction['score']:.2f}  {sentence}")
    demo_input = workspace / "demo_sentences.txt"
    demo_input.write_text("\n".join(DEMO_SENTENCES) + "\n", encoding="utf-8")
    predictions = workspace / "demo_predictions.jsonl"
    print(
        f"\nkosenttype-predict --model {shown / 'model'} --input {shown / demo_input.name} "
        f"--output {shown / predictions.name}:",
        flush=True,
    )
    stop_if_failed(
        "kosenttype-predict",
        predict.main(["--model", str(model_dir), "--input", str(demo_input), "--output", str(predictions)]),
    )
    for line in predictions.read_text(encoding="utf-8").splitlines():
        print(f"  {line}")


def run(args: argparse.Namespace) -> int:
    # A rerun replaces the whole folder, so it may hold nothing but an earlier quickstart's outputs (never the sample
    # data it reads).
    refuse_input_as_output(args.output_dir, [SAMPLE_DATA], "--output-dir")
    if args.output_dir.is_dir():
        foreign = sorted(path.name for path in args.output_dir.iterdir() if path.name not in OUTPUT_ENTRIES)
        if foreign:
            raise KoSentTypeError(
                f"--output-dir {args.output_dir} holds files the quickstart did not write ({', '.join(foreign[:5])}); "
                "choose a new or empty folder"
            )
    with staged_folder(args.output_dir, replace=True) as workspace:  # a link is written through, as staged_folder does
        build(workspace, QUICK if args.quick else FULL, args.seed)
        classify_demo_sentences(workspace, shown=args.output_dir)
    model_dir = args.output_dir / "model"
    print(
        f"\nDone. The Hub-ready model is in {model_dir} (weights, config, code files, tokenizer, model card).\n"
        f"The Trainer's checkpoints (for resuming; not for publishing) are in {args.output_dir / 'checkpoints'}.\n"
        "Next:\n"
        f"  kosenttype-predict --model {model_dir} --input YOUR_SENTENCES.txt --output predictions.jsonl\n"
        "  kosenttype-convert --checkpoint RUN/best.pt --output-dir kosenttype-model   # your trained best.pt\n"
        "  kosenttype-train --help   # retrain with the real backbone (README: Training)"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 the run could not go on, 128+N stopped by signal N (the previous folder kept)."""
    return run_command(PROGRAM, lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
