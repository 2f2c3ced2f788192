"""Class-weighted cross-entropy and a seeded weighted sampler for the `Trainer`: the types are imbalanced (대화형 is a
few percent). docs/training.md explains the exact per-step weighting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import Trainer

from .modeling_kosenttype import cross_entropy_sums, known_label_weight

CLASS_WEIGHTINGS = ("balanced", "inverse_sqrt", "none")


def class_weights_from_counts(counts: Sequence[int], scheme: str) -> torch.Tensor:
    """Cross-entropy weights per class, scaled so an average training sentence weighs 1 (an absent class: 0)."""
    if scheme not in CLASS_WEIGHTINGS:
        raise ValueError(f"Unknown class weighting {scheme!r}; expected one of {', '.join(CLASS_WEIGHTINGS)}.")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if scheme == "none":
        return torch.ones_like(counts, dtype=torch.float32)
    raw = torch.where(counts > 0, counts.clamp(min=1) ** (-1.0 if scheme == "balanced" else -0.5), 0.0)
    return (raw * counts.sum() / (raw * counts).sum()).float()


def sample_weights_for(labels: Sequence[int]) -> list[float]:
    """Per-sentence draw weights 1 / n_class: every class is equally likely in each draw."""
    counts = Counter(labels)
    return [1.0 / counts[label] for label in labels]


class SeededWeightedRandomSampler(Sampler[int]):
    """A `WeightedRandomSampler` whose draw depends only on (seed, epoch): every process draws the same indices and
    accelerate deals their batches out, and a resumed run replays its epoch. It has no `generator` attribute, which
    accelerate would replace with a randomly seeded one."""

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


class WeightedTrainer(Trainer):
    """A `Trainer` with class-weighted cross-entropy and, optionally, a seeded weighted random sampler.

    Each head's loss is sum(w_y * CE) / sum(w_y) over the whole optimizer step (all accumulated micro-batches and
    all processes), as one big batch would give: `num_items_in_batch` is the step's total weight per head, gathered
    across processes, and `model_accepts_loss_kwargs` tells the Trainer not to divide again. With attribute heads
    the loss is the type's plus each axis's times `config.attribute_loss_weights`.
    """

    def __init__(
        self,
        *args: Any,
        class_weights: torch.Tensor | None = None,
        sample_weights: Sequence[float] | None = None,
        attribute_class_weights: Sequence[torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        config = self.accelerator.unwrap_model(self.model).config
        self.class_weights = class_weights if class_weights is not None else torch.ones(config.num_labels)
        self.attribute_loss_weights = list((getattr(config, "attribute_loss_weights", None) or {}).values())
        self.attribute_class_weights: list[torch.Tensor | None] = list(
            attribute_class_weights or [None] * len(self.attribute_loss_weights)
        )
        self.sample_weights = sample_weights
        self.model_accepts_loss_kwargs = True

    def _spans_processes(self) -> bool:
        return self.args.average_tokens_across_devices and self.accelerator.num_processes > 1

    def _heads(self, labels: torch.Tensor, attribute_targets: torch.Tensor | None) -> list[tuple]:
        """(labels, class weights; None = all 1) of each head the batch trains: the type's, then each axis's. The
        weights move to the labels' device once: a copy per step would stall a GPU."""
        if self.class_weights.device != labels.device:
            self.class_weights = self.class_weights.to(labels.device)
            self.attribute_class_weights = [
                weights.to(labels.device) if weights is not None else None for weights in self.attribute_class_weights
            ]
        head_labels = [labels, *(attribute_targets.unbind(dim=-1) if attribute_targets is not None else ())]
        return list(zip(head_labels, [self.class_weights, *self.attribute_class_weights], strict=False))

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """The total class weight of one optimizer step's labels, one per head: the weighted means' denominators."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        totals = sum(
            torch.stack(
                [
                    known_label_weight(labels, weights)
                    for labels, weights in self._heads(batch["labels"], batch.get("attribute_targets"))
                ]
            )
            for batch in batch_samples
        ).to(device)
        return self.accelerator.gather(totals.unsqueeze(0)).sum(dim=0) if self._spans_processes() else totals

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        attribute_targets = inputs.pop("attribute_targets", None)
        outputs = model(**inputs)
        logits = [outputs["logits"] if isinstance(outputs, dict) else outputs[0]]
        if attribute_targets is not None:
            logits += list(outputs["attribute_logits"])
        # Per head Σ w_y · CE (label smoothing, if asked for, weighted per class as torch does); the Trainer's own
        # label smoother is bypassed along with its loss.
        sums = [
            cross_entropy_sums(head_logits, head_labels, weights, self.args.label_smoothing_factor)
            for head_logits, (head_labels, weights) in zip(logits, self._heads(labels, attribute_targets), strict=True)
        ]
        numerators = torch.stack([total for total, _ in sums])
        # Without the step's totals (a batch on its own, as in evaluation), the batch's weighted means.
        denominators = torch.stack([weight for _, weight in sums]) if num_items_in_batch is None else num_items_in_batch
        loss_weights = torch.tensor([1.0, *self.attribute_loss_weights][: len(sums)], device=numerators.device)
        tiny = torch.finfo(numerators.dtype).tiny  # an axis no example of the step knows adds 0, not 0/0
        loss = (loss_weights * numerators / denominators.reshape(-1).to(numerators.device).clamp(min=tiny)).sum()
        if num_items_in_batch is not None and self._spans_processes():
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler | None:
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if len(self.sample_weights) != len(dataset):
            raise ValueError(f"{len(self.sample_weights)} sample weights for {len(dataset)} training examples.")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededWeightedRandomSampler(self.sample_weights, num_samples=len(dataset), seed=seed)
