"""What the class weighting costs: WeightedTrainer (weighted loss + seeded weighted sampler) against the plain
Trainer, same model and data, in alternating runs; the overhead from the median CPU time per step (goal < 5%).
Why CPU time and one thread: docs/benchmarks.md.

    python benchmarks/bench_weighted_trainer.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as transformers_logging

from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.scratch_models import tiny_encoder_config
from kosenttype.weighting import WeightedTrainer, class_weights_from_counts, sample_weights_for

# The type mix of the DACON training set (사실형 82%, 추론형 13%, 예측형 1.5%, 대화형 3.5%).
TYPE_SHARES = (0.82, 0.13, 0.015, 0.035)
VOCAB_SIZE = 8000
SENTENCE_TOKENS = 40  # about a DACON sentence's length in WordPiece tokens
WARMUP_STEPS = 3


class SyntheticSentences(torch.utils.data.Dataset):
    """Random token ids with labels in the real mix: only the computation matters here. Every sentence has the same
    length: the weighted sampler repeats the few rare-type sentences, so with varied lengths its batches would pad
    to another width than shuffled ones and the comparison would measure that."""

    def __init__(self, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.multinomial(torch.tensor(TYPE_SHARES), size, replacement=True, generator=generator).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        body = torch.randint(5, VOCAB_SIZE, (SENTENCE_TOKENS,), generator=torch.Generator().manual_seed(index))
        return {"input_ids": [0, *body.tolist(), 2], "labels": self.labels[index]}


class StepTimer(TrainerCallback):
    """Wall and CPU time of each optimizer step after the first few (which include allocation and warm-up)."""

    def __init__(self) -> None:
        self.started, self.wall, self.cpu = (0.0, 0.0), [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > WARMUP_STEPS:
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(time.process_time() - self.started[1])


def step_durations(weighted: bool, dataset: SyntheticSentences, hidden: int, layers: int, steps: int) -> StepTimer:
    torch.manual_seed(0)
    encoder = tiny_encoder_config(VOCAB_SIZE, hidden_size=hidden, num_layers=layers, max_length=128)
    model = KoSentTypeForSequenceClassification(KoSentTypeConfig(encoder_config=encoder, backbone_name=None))
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output:
        no_saving_evaluating_or_logging = dict.fromkeys(("save_strategy", "eval_strategy", "logging_strategy"), "no")
        args = TrainingArguments(
            output,
            per_device_train_batch_size=32,
            max_steps=steps + WARMUP_STEPS,
            learning_rate=2e-5,
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_pin_memory=False,
            **no_saving_evaluating_or_logging,
        )
        common = {"model": model, "args": args, "train_dataset": dataset, "callbacks": [timer]}
        counts = [dataset.labels.count(label) for label in range(len(TYPE_SHARES))]
        weights = {"class_weights": class_weights_from_counts(counts, "balanced")}
        weights["sample_weights"] = sample_weights_for(dataset.labels)
        (WeightedTrainer(**common, **weights) if weighted else Trainer(**common)).train()
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    steps, repeats = (15, 3) if options.quick else (50, 8)
    transformers_logging.set_verbosity_error()
    dataset = SyntheticSentences(32 * (steps + WARMUP_STEPS))
    timers: dict[str, list[StepTimer]] = {"plain Trainer": [], "WeightedTrainer": []}
    for _ in range(repeats):
        for name, weighted in (("plain Trainer", False), ("WeightedTrainer", True)):
            timers[name].append(step_durations(weighted, dataset, options.hidden, options.layers, steps))
    print(
        f"\nencoder: RoBERTa {options.layers} layers, hidden {options.hidden}, vocabulary {VOCAB_SIZE}; batch 32 of "
        f"{SENTENCE_TOKENS + 2} tokens; {repeats} alternating runs x {steps} timed steps each; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'variant':<16} {'CPU s/step (median)':>20} {'wall steps/s (median)':>22}")
    cpu_per_step = {}
    for name, runs in timers.items():
        cpu_per_step[name] = statistics.median(duration for run in runs for duration in run.cpu)
        wall_rate = 1 / statistics.median(duration for run in runs for duration in run.wall)
        print(f"{name:<16} {cpu_per_step[name]:>20.4f} {wall_rate:>22.3f}")
    overhead = (cpu_per_step["WeightedTrainer"] / cpu_per_step["plain Trainer"] - 1) * 100
    print(f"overhead of the weighting (median CPU time per step): {overhead:+.1f}% (goal: < 5%)")


if __name__ == "__main__":
    main()
