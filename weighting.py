"""Class-weighted cross-entropy and a seeded weighted sampler for the Hugging Face `Trainer`.

The training data is imbalanced (대화형 is a few percent of the sentences), so the recipe weights the loss by class
and draws every epoch's sentences so that each type is equally likely. `WeightedTrainer` does both for any sequence
classifier, exactly: the loss of an optimizer step is the weighted mean over all of that step's examples, whatever
the gradient accumulation and the number of processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import Trainer

from .modeling_kosenttype import cross_entropy_sums

CLASS_WEIGHTINGS = ("balanced", "inverse_sqrt", "none")


def class_weights_from_counts(counts: Sequence[int], scheme: str) -> torch.Tensor:
    """Cross-entropy weights per class, each scheme scaled so an average training sentence weighs 1.

    A class absent from training gets weight 0: it never appears in a batch, and a division by its zero count
    would only spread inf into the logs.
    """
    if scheme not in CLASS_WEIGHTINGS:
        raise ValueError(f"Unknown class weighting {scheme!r}; expected one of {', '.join(CLASS_WEIGHTINGS)}.")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    if scheme == "none":
        return torch.ones_like(counts, dtype=torch.float32)
    raw = torch.where(present, counts.clamp(min=1) ** (-1.0 if scheme == "balanced" else -0.5), 0.0)
    return (raw * counts.sum() / (raw * counts).sum()).float()


def sample_weights_for(labels: Sequence[int]) -> list[float]:
    """Per-sentence draw weights 1 / n_class: every class is equally likely in each draw."""
    counts = Counter(labels)
    return [1.0 / counts[label] for label in labels]


class SeededWeightedRandomSampler(Sampler[int]):
    """A `WeightedRandomSampler` whose draw depends only on (seed, epoch), never on the global RNG.

    Under torchrun/accelerate every process builds this sampler and draws the same `num_samples` indices for the
    epoch; accelerate's `BatchSamplerShard` then deals the batches of that one draw out to the processes in turn, so
    the shards are disjoint and together are exactly the single-process draw. The Trainer (through accelerate's
    `DataLoaderShard.set_epoch`) sets the epoch before each pass, so each epoch has a new draw and a resumed run
    replays the one it was interrupted in. It deliberately has no `generator` attribute: accelerate would replace
    a `None` one with a randomly seeded generator.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw())

    def __len__(self) -> int:
        return self.num_samples


def known_label_weight(labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Σ w_y over the labels that are known (-100 = unknown); without class weights, their count."""
    known = labels != -100
    if class_weights is None:
        return known.sum().float()
    return torch.where(known, class_weights.to(labels.device)[labels.clamp(min=0)], 0.0).sum()


class WeightedTrainer(Trainer):
    """A `Trainer` with class-weighted cross-entropy and, optionally, a seeded weighted random sampler.

    The loss of an optimizer step is sum(w_y * CE) / sum(w_y) over the whole step's examples — all micro-batches of
    gradient accumulation and all processes — which is what one big batch would give. The Trainer divides a custom
    loss by the accumulation steps only when it thinks the model does not normalise by `num_items_in_batch`; here
    `num_items_in_batch` is the step's total weight (see `_get_num_items_in_batch`) and `compute_loss` divides by
    it, so `model_accepts_loss_kwargs` is set to say so (in transformers 4.57 and 5.x alike). Under several
    processes the total is gathered, and the loss multiplied by the process count to undo DDP's gradient averaging.

    A model with attribute heads (a kosenttype model with `config.attributes`, fed `attribute_targets`) is trained
    on the joint loss: the type's weighted mean cross-entropy plus, for each axis, `config.attribute_loss_weights`
    times that axis's weighted mean cross-entropy (class weights `attribute_class_weights`, in axis order) — each
    mean taken, the same way, over the whole step; `num_items_in_batch` is then one total per head.
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

    def _head_weights_on(self, device: torch.device) -> list[torch.Tensor]:
        """Each head's class weights (type first, then the axes'; None = all 1), moved to `device` once: a copy
        per step would stall a GPU."""
        if self.class_weights.device != device:
            self.class_weights = self.class_weights.to(device)
            self.attribute_class_weights = [
                weights.to(device) if weights is not None else None for weights in self.attribute_class_weights
            ]
        return [self.class_weights, *self.attribute_class_weights]

    def _spans_processes(self) -> bool:
        return self.args.average_tokens_across_devices and self.accelerator.num_processes > 1

    def _heads(self, labels: torch.Tensor, attribute_targets: torch.Tensor | None) -> list[tuple]:
        """(labels, class weights) of each head the batch trains: the type's, then each attribute axis's."""
        head_labels = [labels, *(attribute_targets.unbind(dim=-1) if attribute_targets is not None else ())]
        return list(zip(head_labels, self._head_weights_on(labels.device), strict=False))

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
