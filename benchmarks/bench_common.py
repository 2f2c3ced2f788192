"""What the prediction benchmarks share: the real data they read in place, and the models they build.

Imports of torch and transformers stay inside the functions, so a benchmark's onnxruntime worker that imports this
module measures onnxruntime's memory, not torch's.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DACON_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dacon" / "train.csv"
SENTENCE_TYPES = ("사실형", "추론형", "예측형", "대화형")
MAX_LENGTH = 256
TRAIN_MAX_LENGTH = 64  # the agreement model's: few dacon sentences are longer, and training stays short


def fixed_split(examples: list, seed: int = 42) -> dict[str, list]:
    """80% train (of which 10% validation) and 20% test, stratified by each example's `.label`."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(examples, test_size=0.2, random_state=seed, stratify=[e.label for e in examples])
    train_part, validation = train_test_split(rest, test_size=0.1, random_state=seed, stratify=[e.label for e in rest])
    return {"train": train_part, "validation": validation, "test": test}


def load_dacon(path: Path = DACON_CSV, seed: int = 0) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Shuffled (sentence, label id) pairs split in two halves: one to fit tokenizers/models, one to measure on."""
    label_ids = {label: index for index, label in enumerate(SENTENCE_TYPES)}
    with path.open(encoding="utf-8", newline="") as stream:
        rows = [(row["문장"], label_ids[row["유형"]]) for row in csv.DictReader(stream)]
    random.Random(seed).shuffle(rows)
    half = len(rows) // 2
    return rows[:half], rows[half:]


def backbone_shaped_model(folder: Path, fit_sentences: list[str], layers: int, tokenizer=None) -> Path:
    """Our classifier at the real backbone's shape (random weights: speed doesn't depend on them), with a
    32,000-token WordPiece vocabulary fitted on `fit_sentences` unless a tokenizer is given."""
    import torch

    from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
    from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import train_wordpiece_tokenizer

    tokenizer = tokenizer or train_wordpiece_tokenizer(fit_sentences, vocab_size=KO_SROBERTA_ENCODER["vocab_size"])
    encoder = {**KO_SROBERTA_ENCODER, "num_hidden_layers": layers}
    torch.manual_seed(0)
    model = KoSentTypeForSequenceClassification(KoSentTypeConfig(encoder_config=encoder, backbone_name=None))
    model.eval().save_pretrained(folder)
    save_tokenizer_for_hub(tokenizer, folder, max_length=MAX_LENGTH)
    return folder


def build_speed_models(folder: Path, fit_sentences: list[str], layers: int) -> tuple[Path, Path]:
    """transformers' RoBERTa classifier and ours at the backbone's shape, random weights, one shared tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(fit_sentences, vocab_size=KO_SROBERTA_ENCODER["vocab_size"])
    encoder = {**KO_SROBERTA_ENCODER, "num_hidden_layers": layers}
    labels = {"id2label": dict(enumerate(SENTENCE_TYPES)), "label2id": {v: k for k, v in enumerate(SENTENCE_TYPES)}}
    torch.manual_seed(0)
    stock_dir = folder / "roberta"
    stock_config = RobertaConfig(**{key: value for key, value in encoder.items() if key != "model_type"}, **labels)
    RobertaForSequenceClassification(stock_config).save_pretrained(stock_dir)
    save_tokenizer_for_hub(tokenizer, stock_dir, max_length=MAX_LENGTH)
    return stock_dir, backbone_shaped_model(folder / "kosenttype", fit_sentences, layers, tokenizer)


def train_agreement_model(folder: Path, rows: list[tuple[str, int]], steps: int, layers: int) -> Path:
    """A small classifier trained from scratch, so that its probabilities have real margins to disagree on.

    Classes are sampled evenly (the data is 82% 사실형), so all four labels are predicted and the comparison
    also covers the rare ones.
    """
    import torch

    from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer

    sentences, labels = [text for text, _ in rows], torch.tensor([label for _, label in rows])
    tokenizer = train_wordpiece_tokenizer(sentences, vocab_size=8000)
    encoder = tiny_encoder_config(len(tokenizer), hidden_size=256, num_layers=layers, max_length=TRAIN_MAX_LENGTH)
    torch.manual_seed(0)
    model = KoSentTypeForSequenceClassification(KoSentTypeConfig(encoder_config=encoder, backbone_name=None)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (steps // 10 + 1)))
    sample_weights = (1.0 / torch.bincount(labels, minlength=len(SENTENCE_TYPES)).clamp(min=1).float())[labels]
    for _ in range(steps):
        batch = torch.multinomial(sample_weights, 32, replacement=True).tolist()
        inputs = tokenizer(
            [sentences[i] for i in batch],
            padding=True,
            truncation=True,
            max_length=TRAIN_MAX_LENGTH,
            return_tensors="pt",
        )
        model(**inputs, labels=labels[batch]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    save_tokenizer_for_hub(tokenizer, folder, max_length=TRAIN_MAX_LENGTH)
    return folder
