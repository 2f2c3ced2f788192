"""The `Classifier`: a backend and a tokenizer, and all that is the same on every backend: tokenizing, length-sorted
token-budgeted batching, logits to labels in input order, error records. A backend only runs the network."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from .batching import length_sorted_batches, pad_batch
from .model_limits import model_max_length
from .records import InputRecord, LineError, Prediction, sentence_record

TYPE_HEAD = "type"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_LENGTH = 256
# Records read, length-sorted, classified and written at a time: bounds memory on any input size.
DEFAULT_CHUNK_SIZE = 1024
NON_FINITE_MESSAGE = "the model produced non-finite scores (NaN or inf); its weights may be corrupt"
# On a CPU, ~1,000-token batches ran up to 20% faster than 4,096 (benchmarks/bench_predict.py: bigger activations
# leave the caches). GPUs want the largest batch that fits: no token limit by default.
CPU_BATCH_TOKENS = 1024


class Backend(Protocol):
    """What runs the network: `logits` gives one float32 array [batch, labels] per head ("type", then each attribute
    head). `device` is "cpu" or a GPU's name; `precision` one of fp32/bf16/fp16/int8."""

    name: str
    device: str
    precision: str

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class EngineSettings:
    """How `classify_records` batches. `max_batch_tokens`: None picks the device's default (CPU_BATCH_TOKENS on a
    CPU, no limit on a GPU), 0 means no limit. `max_length` is lowered to what the model's positions allow."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_length: int = DEFAULT_MAX_LENGTH
    top_k: int = 1
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_batch_tokens: int | None = None
    progress: Callable[[int], None] | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def ranked_labels(scores: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[tuple[str, float]]:
    """(label, score) pairs, highest first (ties in label order), the `top_k` first (None: all)."""
    return [(labels[index], float(scores[index])) for index in np.argsort(-scores, kind="stable")[:top_k]]


def all_finite(arrays: Iterable[np.ndarray]) -> bool:
    return all(np.isfinite(values).all() for values in arrays)


@dataclass
class Classifier:
    """A loaded model: `heads` maps "type" and each attribute head to its labels, `max_length` is the most tokens
    the encoder takes, and a `multi_label` model gets a sigmoid per label instead of a softmax, as in `pipeline`."""

    backend: Backend
    tokenizer: Tokenizer
    heads: dict[str, list[str]]
    max_length: int
    pad_token_id: int
    name: str = ""
    multi_label: bool = False
    _tokenizers: dict[int | None, Tokenizer] = field(default_factory=dict, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        return self.heads[TYPE_HEAD]

    @property
    def attributes(self) -> dict[str, list[str]]:
        return {head: labels for head, labels in self.heads.items() if head != TYPE_HEAD}

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def device(self) -> str:
        return self.backend.device

    def resolve(self, settings: EngineSettings, cpu_batch_tokens: int = CPU_BATCH_TOKENS) -> EngineSettings:
        """The settings a run really uses: `max_length` capped at the model's limit, the device's token budget
        (`cpu_batch_tokens` on a CPU, no limit on a GPU) unless the settings name one."""
        default_tokens = cpu_batch_tokens if self.device == "cpu" else 0
        tokens = default_tokens if settings.max_batch_tokens is None else settings.max_batch_tokens
        return replace(settings, max_length=min(settings.max_length, self.max_length), max_batch_tokens=tokens)

    def token_ids(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        """Token ids of each text, special tokens included, truncated at `max_length` (None: not); no padding."""
        return [encoding.ids for encoding in self._tokenizer_truncating_at(max_length).encode_batch(list(texts))]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text has before any truncation (special tokens included)."""
        return [len(ids) for ids in self.token_ids(texts, None)]

    def _tokenizer_truncating_at(self, max_length: int | None) -> Tokenizer:
        """A private tokenizer per truncation length: `enable_truncation` changes a tokenizer in place, which would
        race between threads (the server's) or runs with other lengths; encoding itself is safe to share."""
        if max_length not in self._tokenizers:
            tokenizer = Tokenizer.from_str(self.tokenizer.to_str())  # unpadded: see classifier_from_config
            if max_length is None:
                tokenizer.no_truncation()
            else:
                tokenizer.enable_truncation(max_length)
            self._tokenizers[max_length] = tokenizer
        return self._tokenizers[max_length]

    def logits(self, texts: Sequence[str], settings: EngineSettings = EngineSettings()) -> dict[str, np.ndarray]:
        """Raw logits of every head for `texts`, in input order, run in length-sorted token-budgeted batches."""
        settings = self.resolve(settings)
        token_ids = self.token_ids(texts, settings.max_length)
        lengths = [len(ids) for ids in token_ids]
        result = {head: np.zeros((len(texts), len(labels)), np.float32) for head, labels in self.heads.items()}
        for batch in length_sorted_batches(lengths, settings.batch_size, settings.max_batch_tokens):
            outputs = self.backend.logits(*pad_batch([token_ids[index] for index in batch], self.pad_token_id))
            for head in self.heads:
                result[head][batch] = outputs[head]
            if settings.progress is not None:
                settings.progress(len(batch))
        return result

    def probabilities(self, logits: np.ndarray, head: str = TYPE_HEAD) -> np.ndarray:
        """Softmax over a head's labels, or a sigmoid per label for multi-label and single-output type heads."""
        if head == TYPE_HEAD and (self.multi_label or logits.shape[-1] == 1):
            return sigmoid(logits)
        return softmax(logits)

    def classify_records(self, records: Iterable[InputRecord], settings: EngineSettings) -> Iterator[Prediction]:
        """One prediction per record, in input order, holding at most one chunk of records in memory."""
        records = iter(records)
        while chunk := list(islice(records, settings.chunk_size)):
            yield from self.classify_chunk(chunk, settings)

    def classify_chunk(self, chunk: Sequence[InputRecord], settings: EngineSettings) -> list[Prediction]:
        """Classify records that fit in memory together: error records pass through, the rest run batched."""
        texts = [record.text for record in chunk if record.error is None]
        scores = {head: self.probabilities(values, head) for head, values in self.logits(texts, settings).items()}
        rows = ({head: values[row] for head, values in scores.items()} for row in range(len(texts)))
        return [
            Prediction(record.id, error=record.error)
            if record.error
            else self.prediction(record.id, next(rows), settings)
            for record in chunk
        ]

    def prediction(
        self, record_id: Any, probabilities: Mapping[str, np.ndarray], settings: EngineSettings
    ) -> Prediction:
        """A record's prediction from its probabilities per head, or an error if the model produced NaN or inf."""
        if not all_finite(probabilities.values()):
            return Prediction(record_id, error=LineError("non_finite", NON_FINITE_MESSAGE))
        top_k = ranked_labels(probabilities[TYPE_HEAD], self.labels, settings.top_k)
        attributes = {
            head: (labels[int(probabilities[head].argmax())], float(probabilities[head].max()))
            for head, labels in self.attributes.items()
        }
        return Prediction(record_id, top_k[0][0], top_k[0][1], top_k, attributes or None)

    def classify(self, sentences: Iterable[Any], **settings: Any) -> Iterator[Prediction]:
        """One `Prediction` per sentence, lazily, in input order (`id` = its index); a blank or non-string item gets
        one with `error` set instead of raising. `settings`: `EngineSettings`' fields (batch_size, max_length, top_k,
        chunk_size, max_batch_tokens, progress: called with the number of sentences each batch finished)."""
        records = (sentence_record(index, text, f"item {index}") for index, text in enumerate(sentences))
        return self.classify_records(records, EngineSettings(**settings))


def heads_from_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"type": labels, attribute: labels, …} from a config.json mapping (id2label keys may be strings)."""
    id2label = config.get("id2label") or {}
    heads = {TYPE_HEAD: [id2label[key] for key in sorted(id2label, key=int)]}
    attributes = config.get("attributes") or {}
    pairs = attributes.items() if isinstance(attributes, Mapping) else attributes  # config.json keeps [name, labels]
    heads.update({axis: list(labels) for axis, labels in pairs})
    return heads


def classifier_from_config(
    backend: Backend, tokenizer: Tokenizer, config: Mapping[str, Any], name: str, tokenizer_limit: int | None
) -> Classifier:
    """Assemble a Classifier from a loaded backend and tokenizer and the model's config.json as a mapping."""
    padding = tokenizer.padding
    tokenizer.no_padding()
    pad_token_id = padding["pad_id"] if padding else config.get("pad_token_id")
    if pad_token_id is None:
        pad_token_id = (config.get("encoder_config") or {}).get("pad_token_id") or 0
    return Classifier(
        backend=backend,
        tokenizer=tokenizer,
        heads=heads_from_config(config),
        max_length=model_max_length(config, tokenizer_limit),
        pad_token_id=int(pad_token_id),
        name=name,
        multi_label=config.get("problem_type") == "multi_label_classification",
    )
