"""WeightedTrainer: the weighted loss, its exactness under gradient accumulation and DDP, and the seeded sampler.

Expectations are computed here independently: torch's own `CrossEntropyLoss(weight=...)`, scikit-learn's
"balanced" class weights, the documented draw (`torch.multinomial` seeded with seed + epoch) and, for accumulation
and multi-process training, a plain single-process run with the whole batch at once.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TINY_MAX_LENGTH
from sklearn.utils.class_weight import compute_class_weight
from transformers import TrainerCallback, TrainingArguments

from kosenttype import ATTRIBUTE_LABELS, KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.scratch_models import tiny_encoder_config
from kosenttype.weighting import (
    SeededWeightedRandomSampler,
    WeightedTrainer,
    class_weights_from_counts,
    sample_weights_for,
)

# 16 examples, imbalanced like the real data: type 3 is rare.
LABELS = [0] * 8 + [1] * 4 + [2] * 3 + [3] * 1
# Polarity, tense and certainty of each example (the three axes of ATTRIBUTE_LABELS); -100: unknown, no loss.
ATTRIBUTE_TARGETS = [[index % 3, (index // 2) % 3, -100 if index == 5 else index % 2] for index in range(16)]
ATTRIBUTE_LOSS_WEIGHTS = {"polarity": 0.5, "tense": 2.0, "certainty": 1.0}
SEED = 7
VOCAB_SIZE = 100


class IndexedExamples(torch.utils.data.Dataset):
    """Token ids made up from a seed (no tokenizer needed), each example carrying its index to be recorded."""

    def __init__(self, labels: list[int], attribute_targets: list[list[int]] | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        self.rows = []
        for index, label in enumerate(labels):
            length = int(torch.randint(3, 12, (1,), generator=generator))
            body = torch.randint(5, VOCAB_SIZE, (length,), generator=generator).tolist()
            self.rows.append({"input_ids": [0, *body, 2], "labels": label, "index": index})
            if attribute_targets is not None:
                self.rows[-1]["attribute_targets"] = attribute_targets[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


class RecordingCollator:
    """Pads like DataCollatorWithPadding (pad id 1) and records which examples each batch holds, per epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[list[int]]] = []

    def __call__(self, features: list[dict]) -> dict:
        self.epochs[-1].append([feature["index"] for feature in features])
        width = max(len(feature["input_ids"]) for feature in features)
        input_ids = [feature["input_ids"] + [1] * (width - len(feature["input_ids"])) for feature in features]
        mask = [[1] * len(feature["input_ids"]) + [0] * (width - len(feature["input_ids"])) for feature in features]
        batch = {
            "input_ids": torch.tensor(input_ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor([feature["labels"] for feature in features]),
        }
        if "attribute_targets" in features[0]:
            batch["attribute_targets"] = torch.tensor([feature["attribute_targets"] for feature in features])
        return batch


class EpochMarker(TrainerCallback):
    def __init__(self, collator: RecordingCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epochs.append([])


def tiny_model(attributes: bool = False) -> KoSentTypeForSequenceClassification:
    """Seeded and without dropout, so two runs that see the same batches compute the same numbers."""
    torch.manual_seed(0)
    encoder = tiny_encoder_config(VOCAB_SIZE, hidden_size=32, max_length=TINY_MAX_LENGTH)
    encoder.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    heads = {"attributes": ATTRIBUTE_LABELS, "attribute_loss_weights": ATTRIBUTE_LOSS_WEIGHTS} if attributes else {}
    config = KoSentTypeConfig(encoder_config=encoder, backbone_name=None, classifier_dropout=0.0, **heads)
    return KoSentTypeForSequenceClassification(config)


def attribute_class_weights(weighting: str) -> list[torch.Tensor]:
    """Each axis's class weights from its known labels' counts, the way the type's are computed."""
    weights = []
    for axis, labels in enumerate(ATTRIBUTE_LABELS.values()):
        known = [targets[axis] for targets in ATTRIBUTE_TARGETS if targets[axis] != -100]
        weights.append(class_weights_from_counts([known.count(label) for label in range(len(labels))], weighting))
    return weights


def run_recorded_training(
    output_dir: str,
    *,
    batch_size: int,
    accumulation: int = 1,
    epochs: int = 1,
    weighting: str = "balanced",
    sampler: bool = True,
    model: KoSentTypeForSequenceClassification | None = None,
    attributes: bool = False,
) -> dict:
    """Train the tiny model with WeightedTrainer; return the batches each epoch saw and the logged loss/grad norm.
    With `attributes`, the model has the three attribute heads and trains on the joint loss."""
    collator = RecordingCollator()
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=epochs,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=SEED,
        remove_unused_columns=False,
        train_sampling_strategy="sequential",
    )
    counts = [LABELS.count(label) for label in range(4)]
    trainer = WeightedTrainer(
        model=model if model is not None else tiny_model(attributes),
        args=args,
        train_dataset=IndexedExamples(LABELS, ATTRIBUTE_TARGETS if attributes else None),
        data_collator=collator,
        callbacks=[EpochMarker(collator)],
        class_weights=class_weights_from_counts(counts, weighting),
        sample_weights=sample_weights_for(LABELS) if sampler else None,
        attribute_class_weights=attribute_class_weights(weighting) if attributes else None,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "batches": collator.epochs,
        "losses": [entry["loss"] for entry in logs],
        "grad_norms": [entry["grad_norm"] for entry in logs],
        "rank": trainer.args.process_index,
    }


def expected_draw(epoch: int) -> list[int]:
    """The documented contract: 1/n_class weights, len(data) draws with replacement, generator seeded seed+epoch."""
    counts = Counter(LABELS)
    weights = torch.tensor([1.0 / counts[label] for label in LABELS], dtype=torch.float64)
    generator = torch.Generator().manual_seed(SEED + epoch)
    return torch.multinomial(weights, len(LABELS), replacement=True, generator=generator).tolist()


def reference_weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return torch.nn.CrossEntropyLoss(weight=weights)(logits.float(), labels)


# ---- class weights ----------------------------------------------------------------------------------------------


def test_balanced_weights_match_scikit_learn():
    counts = [LABELS.count(label) for label in range(4)]
    expected = compute_class_weight("balanced", classes=np.arange(4), y=np.array(LABELS))
    assert torch.allclose(class_weights_from_counts(counts, "balanced"), torch.tensor(expected, dtype=torch.float32))


def test_inverse_sqrt_weights_average_one_per_sentence():
    counts = [80, 20, 5, 0]
    weights = class_weights_from_counts(counts, "inverse_sqrt")
    raw = [1 / 80**0.5, 1 / 20**0.5, 1 / 5**0.5]
    scale = sum(counts) / sum(weight * count for weight, count in zip(raw, counts, strict=False))
    assert torch.allclose(weights, torch.tensor([raw[0] * scale, raw[1] * scale, raw[2] * scale, 0.0]))
    assert class_weights_from_counts(counts, "none").tolist() == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="Unknown class weighting"):
        class_weights_from_counts(counts, "focal")


# ---- the weighted loss --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_compute_loss_is_torch_weighted_cross_entropy(tmp_path, smoothing):
    model = tiny_model().eval()
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, label_smoothing_factor=smoothing)
    trainer = WeightedTrainer(model=model, args=args, class_weights=weights)
    batch = RecordingCollator()
    batch.epochs.append([])
    inputs = batch(IndexedExamples(LABELS).rows)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(inputs))
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        total_weight = weights[inputs["labels"]].sum()
        loss_over_total = trainer.compute_loss(model, dict(inputs), num_items_in_batch=2 * total_weight)
    expected = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=smoothing)(logits, inputs["labels"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # Given the whole step's weight (here: twice this batch's), the batch contributes its share of the step's mean.
    assert loss_over_total.item() == pytest.approx(expected.item() / 2, rel=1e-6)


def test_first_logged_loss_is_weighted_mean_over_accumulated_batch(tmp_path):
    model = tiny_model()
    initial = copy.deepcopy(model).eval()
    run = run_recorded_training(str(tmp_path), batch_size=4, accumulation=2, sampler=False, model=model)
    first_step = [index for batch in run["batches"][0][:2] for index in batch]
    rows = [IndexedExamples(LABELS).rows[index] for index in first_step]
    collator = RecordingCollator()
    collator.epochs.append([])
    inputs = collator(rows)
    with torch.no_grad():
        logits = initial(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    weights = torch.tensor(
        compute_class_weight("balanced", classes=np.arange(4), y=np.array(LABELS)), dtype=torch.float32
    )
    expected = reference_weighted_ce(logits, inputs["labels"], weights).item()
    assert run["losses"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weighting", ["none", "balanced"])
def test_accumulation_matches_one_batch_twice_as_large(tmp_path, weighting):
    """Accumulating 2 x 4 must log the loss and gradient norm of one batch of 8: exactly (float rounding aside)
    unweighted, and weighted too, since the weighted mean is taken over the whole accumulated batch."""
    whole = run_recorded_training(str(tmp_path / "one"), batch_size=8, weighting=weighting, sampler=False)
    accumulated = run_recorded_training(
        str(tmp_path / "two"), batch_size=4, accumulation=2, weighting=weighting, sampler=False
    )
    assert [index for batch in accumulated["batches"][0] for index in batch] == whole["batches"][0][0] + whole[
        "batches"
    ][0][1]
    assert len(whole["losses"]) == len(accumulated["losses"]) == 2
    assert accumulated["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    assert accumulated["grad_norms"] == pytest.approx(whole["grad_norms"], rel=1e-5)


def test_joint_loss_is_the_weighted_sum_of_each_heads_weighted_cross_entropy(tmp_path):
    """Type and attribute heads: CE_type(w_type) + Σ λ_axis · CE_axis(w_axis), each by torch's own weighted
    CrossEntropyLoss (unknown -100 values ignored); given a step's totals, each head divides by its own."""
    model = tiny_model(attributes=True).eval()
    weights = [torch.tensor([0.5, 1.0, 2.0, 4.0]), *attribute_class_weights("balanced")]
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, label_names=["labels"])
    trainer = WeightedTrainer(model=model, args=args, class_weights=weights[0], attribute_class_weights=weights[1:])
    collator = RecordingCollator()
    collator.epochs.append([])
    inputs = collator(IndexedExamples(LABELS, ATTRIBUTE_TARGETS).rows)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(inputs))
        step_totals = trainer._get_num_items_in_batch([inputs, inputs], torch.device("cpu"))
        loss_over_step = trainer.compute_loss(model, dict(inputs), num_items_in_batch=step_totals)
        output = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    targets = inputs["attribute_targets"].T
    expected = torch.nn.CrossEntropyLoss(weight=weights[0])(output.logits, inputs["labels"])
    heads = zip(output.attribute_logits, targets, weights[1:], ATTRIBUTE_LOSS_WEIGHTS.values(), strict=True)
    for logits, labels, axis_weights, loss_weight in heads:
        expected += loss_weight * torch.nn.CrossEntropyLoss(weight=axis_weights)(logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss_over_step.item() == pytest.approx(expected.item() / 2, rel=1e-6)


def test_joint_loss_under_accumulation_matches_one_batch_twice_as_large(tmp_path):
    whole = run_recorded_training(str(tmp_path / "one"), batch_size=8, sampler=False, attributes=True)
    accumulated = run_recorded_training(
        str(tmp_path / "two"), batch_size=4, accumulation=2, sampler=False, attributes=True
    )
    assert accumulated["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    assert accumulated["grad_norms"] == pytest.approx(whole["grad_norms"], rel=1e-5)


# ---- the sampler --------------------------------------------------------------------------------------------------


def test_sampler_draws_every_class_equally_often():
    labels = [0] * 900 + [1] * 80 + [2] * 15 + [3] * 5
    sampler = SeededWeightedRandomSampler(sample_weights_for(labels), num_samples=40_000, seed=1)
    frequencies = Counter(labels[index] for index in sampler)
    for label in range(4):
        assert frequencies[label] / 40_000 == pytest.approx(0.25, abs=0.01)


def test_sampler_is_reproducible_from_seed_and_epoch():
    weights = sample_weights_for(LABELS)
    first, second = (SeededWeightedRandomSampler(weights, len(LABELS), seed=SEED) for _ in range(2))
    assert list(first) == list(second) == expected_draw(0)
    first.set_epoch(1)
    assert list(first) == expected_draw(1) != expected_draw(0)
    assert list(SeededWeightedRandomSampler(weights, len(LABELS), seed=SEED + 100)) != expected_draw(0)
    assert len(first) == len(LABELS)


def test_trainer_feeds_each_epoch_its_seeded_draw(tmp_path):
    run = run_recorded_training(str(tmp_path), batch_size=4, epochs=2)
    for epoch in (0, 1):
        assert [index for batch in run["batches"][epoch] for index in batch] == expected_draw(epoch)


WORKER = """
import json, sys
import torch.distributed
sys.path.insert(0, {tests!r})
from test_weighted_trainer import run_recorded_training
result = run_recorded_training({output!r}, batch_size=4, epochs=2)
with open({output!r} + f"/rank{{result['rank']}}.json", "w") as handle:
    json.dump(result, handle)
torch.distributed.destroy_process_group()  # else gloo's threads can abort the process as it exits
"""


def test_two_processes_share_one_draw_and_the_loss_of_one_big_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo): the ranks' batches interleave into exactly the single-process draw, with
    no example twice and none left out, and the logged loss and gradient norm equal one process with batch 8."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(REPO_ROOT / "tests"), output=str(tmp_path)), encoding="utf-8")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    single = run_recorded_training(str(tmp_path / "single"), batch_size=8, epochs=2)
    for epoch in (0, 1):
        rank0, rank1 = ranks[0]["batches"][epoch], ranks[1]["batches"][epoch]
        interleaved = [index for pair in zip(rank0, rank1, strict=True) for batch in pair for index in batch]
        assert interleaved == expected_draw(epoch)
        assert [index for batch in single["batches"][epoch] for index in batch] == expected_draw(epoch)
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert ranks[0]["grad_norms"] == pytest.approx(single["grad_norms"], rel=1e-5)
