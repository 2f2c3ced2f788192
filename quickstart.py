"""The offline quickstart: from the shipped sample sentences to a trained, Hub-ready model and its predictions.

Everything the real workflow does happens here on a toy scale, with no download: a WordPiece tokenizer and a tiny
RoBERTa are built from the sample set, trained with `train_hf.py`'s recipe machinery, evaluated on a held-out part,
saved with `save_pretrained`, and used through `pipeline` and `predict.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split
from transformers import pipeline

from kosenttype import predict, train_hf
from kosenttype.atomic_output import write_text_atomically
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer

SAMPLE_DATA = Path(__file__).resolve().parent / "data" / "sample_sentences.jsonl"
# New sentences, written for this demo and absent from the sample set, one of each type.
DEMO_SENTENCES = [
    "시청 앞 광장에서 어제 저녁 겨울 축제 개막식이 열렸다.",
    "이번 매출 감소는 원자재 가격 상승이 겹친 결과로 풀이된다.",
    "새 지하철 노선은 내년 상반기에 개통될 예정이다.",
    "주말에 같이 영화 보러 갈래요?",
]
MAX_LENGTH = 128


@dataclass(frozen=True)
class QuickstartSettings:
    """How big the demo is: the default finishes in under 3 minutes on 2 CPU cores; `--quick` is for tests."""

    epochs: int
    hidden_size: int
    vocab_size: int


FULL = QuickstartSettings(epochs=30, hidden_size=64, vocab_size=2000)
QUICK = QuickstartSettings(epochs=3, hidden_size=32, vocab_size=500)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/quickstart"), help="Where everything goes.")
    parser.add_argument("--quick", action="store_true", help="A few epochs of a smaller model (for tests).")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def split_sample_data(seed: int) -> dict[str, list[dict]]:
    """Stratified 70/15/15 split: training, validation (picks the best epoch) and a test part it never sees."""
    records = [json.loads(line) for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = [record["label"] for record in records]
    train, rest = train_test_split(records, test_size=0.3, stratify=labels, random_state=seed)
    validation, test = train_test_split(
        rest, test_size=0.5, stratify=[record["label"] for record in rest], random_state=seed
    )
    return {"train": train, "validation": validation, "test": test}


def write_splits(parts: dict[str, list[dict]], output_dir: Path) -> dict[str, Path]:
    """Each part as JSON Lines, the format `train_hf.py` reads."""
    paths = {}
    for name, records in parts.items():
        paths[name] = output_dir / "data" / f"{name}.jsonl"
        write_text_atomically(paths[name], (json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return paths


def build_tokenizer_and_encoder(
    sentences: list[str], output_dir: Path, settings: QuickstartSettings
) -> tuple[Path, Path]:
    """The from-scratch stand-ins for the real backbone: its tokenizer layout and a RoBERTa of toy size."""
    tokenizer = train_wordpiece_tokenizer(sentences, vocab_size=settings.vocab_size)
    tokenizer_dir = output_dir / "tokenizer"
    save_tokenizer_for_hub(tokenizer, tokenizer_dir, max_length=MAX_LENGTH)
    encoder_file = output_dir / "encoder_config.json"
    encoder = tiny_encoder_config(len(tokenizer), hidden_size=settings.hidden_size, max_length=MAX_LENGTH)
    write_text_atomically(encoder_file, json.dumps(encoder, indent=2) + "\n")
    return tokenizer_dir, encoder_file


def training_arguments(
    paths: dict[str, Path],
    tokenizer_dir: Path,
    encoder_file: Path,
    model_dir: Path,
    settings: QuickstartSettings,
    seed: int,
) -> list[str]:
    """`train_hf.py`'s own command line, with a learning rate and batch size fit for a model trained from scratch."""
    return [
        "--encoder_config", str(encoder_file),
        "--tokenizer_name", str(tokenizer_dir),
        "--train_file", str(paths["train"]),
        "--validation_file", str(paths["validation"]),
        "--test_file", str(paths["test"]),
        "--max_seq_length", str(MAX_LENGTH),
        "--output_dir", str(model_dir),
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


def classify_demo_sentences(model_dir: Path, output_dir: Path) -> None:
    """Show both ways of using the result: the stock `pipeline` and the fast batch predictor."""
    classifier = pipeline("text-classification", model=str(model_dir), trust_remote_code=True)
    print('\npipeline("text-classification", model=..., trust_remote_code=True):')
    for sentence, prediction in zip(DEMO_SENTENCES, classifier(DEMO_SENTENCES), strict=True):
        print(f"  {prediction['label']}  {prediction['score']:.2f}  {sentence}")
    demo_input = output_dir / "demo_sentences.txt"
    demo_input.write_text("\n".join(DEMO_SENTENCES) + "\n", encoding="utf-8")
    predictions = output_dir / "demo_predictions.jsonl"
    print(f"\nkosenttype-predict --model {model_dir} --input {demo_input} --output {predictions}:")
    predict.main(["--model", str(model_dir), "--input", str(demo_input), "--output", str(predictions)])
    for line in predictions.read_text(encoding="utf-8").splitlines():
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    output_dir = args.output_dir
    model_dir = output_dir / "model"
    parts = split_sample_data(args.seed)
    paths = write_splits(parts, output_dir)
    train_sentences = [record["sentence"] for record in parts["train"]]
    tokenizer_dir, encoder_file = build_tokenizer_and_encoder(train_sentences, output_dir, settings)
    status = train_hf.main(training_arguments(paths, tokenizer_dir, encoder_file, model_dir, settings, args.seed))
    if status != 0:
        return status
    classify_demo_sentences(model_dir, output_dir)
    print(
        f"\nDone. The Hub-ready model is in {model_dir} (weights, config, code files, tokenizer, model card).\n"
        "Next:\n"
        f"  kosenttype-predict --model {model_dir} --input YOUR_SENTENCES.txt --output predictions.jsonl\n"
        "  kosenttype-convert --checkpoint RUN/best.pt --output-dir kosenttype-model   # your trained best.pt\n"
        "  kosenttype-train --help   # retrain with the real backbone (README: Training)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
