"""Export a saved classifier to ONNX, prove it predicts what torch predicts, and quantize it to int8.

    summary = export_onnx("path/or/hub-id", staging_folder / "onnx")   # model.onnx, model_quantized.onnx

Used by `kosenttype-export-onnx` and by the converter's `--onnx`, always into a folder that is not yet visible (a
staging folder renamed into place afterwards), so that a failed check leaves nothing behind.

The graph comes from torch's `torch.export`-based exporter (`torch.onnx.export(dynamo=True)`). The older
TorchScript exporter traces by running the model once and records Python-level decisions as constants; with
transformers 5's attention-mask code it produced logits 0.035 away from torch's on this architecture (measured
here, torch 2.13), where torch.export's symbolic shapes kept them within 1e-7 (see docs/onnx.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .batching import pad_batch
from .classifier import Classifier, EngineSettings
from .errors import DEBUG_VARIABLE, KoSentTypeError
from .folder_verification import VERIFICATION_SENTENCES
from .onnx_backend import (
    INPUT_NAMES,
    ONNX_FILES,
    RUNTIME_FILES,
    OnnxBackend,
    check_outputs,
    open_session,
    output_name,
)
from .torch_backend import load_torch_classifier

QUANTIZE_CHOICES = ("none", "int8")
# The most the fp32 graph's logits may differ from torch's: float32 rounding of a re-ordered computation stays
# around 1e-6; anything near 1e-4 is a real difference in the graph.
MAX_FP32_LOGIT_DIFFERENCE = 1e-4
EXTERNAL_DATA_SUFFIX = ".data"  # torch's exporter writes weights past 2 GB to model.onnx.data
# The converter's check sentences (each sentence type, emoji, Latin script, one far past 256 tokens, which the
# check truncates at the model's own limit), plus a one-word sentence and a long one with numbers.
PROBE_SENTENCES = [
    *(sentence for sentence in VERIFICATION_SENTENCES if sentence),
    "네.",
    "올해 3분기 영업이익은 1조 2천억 원으로 집계됐으며, 시장에서는 4분기에도 비슷한 흐름이 이어질 것으로 본다.",
]


@dataclass
class ExportSummary:
    """What an export wrote and how closely it matched torch, for the command's report."""

    files: list[Path]
    opset: int
    max_length: int
    probe_count: int
    fp32_max_logit_difference: float
    int8_same_label: float | None = None
    int8_max_probability_difference: float | None = None


class OnnxExportWrapper(nn.Module):
    """What the exporter traces: (input_ids, attention_mask) → the type logits, then each attribute head's, as a
    plain tuple (a ModelOutput's optional fields would make the graph's outputs depend on its arguments)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return (outputs.logits, *(getattr(outputs, "attribute_logits", None) or ()))


def export_onnx(
    model: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    quantize: str = "int8",
    opset: int | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    report: Callable[[str], None] = print,
) -> ExportSummary:
    """Write `destination/model.onnx` (fp32) and, with `quantize="int8"`, `destination/model_quantized.onnx`.

    The fp32 graph must reproduce torch's logits within MAX_FP32_LOGIT_DIFFERENCE on PROBE_SENTENCES, one at a
    time and as one padded batch of mixed lengths, or nothing counts as done (KoSentTypeError). The int8 file's
    agreement with torch is reported, not enforced: it depends on how the model was trained.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise KoSentTypeError(f"--quantize {quantize}: expected one of {', '.join(QUANTIZE_CHOICES)}")
    destination = Path(destination)
    destination.mkdir(exist_ok=True)
    with quiet_libraries():
        reference = load_torch_classifier(
            model, device="cpu", precision="fp32", revision=revision, trust_remote_code=trust_remote_code
        )
    fp32_path = destination / ONNX_FILES["fp32"]
    written_opset = write_fp32_graph(reference, fp32_path, opset)
    fp32 = onnx_twin(reference, fp32_path, "fp32")
    difference = max_logit_difference(reference, fp32, PROBE_SENTENCES)
    summary = ExportSummary([fp32_path], written_opset, reference.max_length, len(PROBE_SENTENCES), difference)
    report(
        f"verified {fp32_path.name} (opset {written_opset}, {_megabytes(fp32_path)}): max abs logit difference "
        f"{difference:.2g} from torch over {len(PROBE_SENTENCES)} probe sentences, one at a time and as one padded "
        f"batch, up to {reference.max_length} tokens"
    )
    if quantize == "int8":
        int8_path = destination / ONNX_FILES["int8"]
        quantize_int8(fp32_path, int8_path)
        same_label, probability_difference = agreement(reference, onnx_twin(reference, int8_path, "int8"))
        summary.files.append(int8_path)
        summary.int8_same_label, summary.int8_max_probability_difference = same_label, probability_difference
        report(
            f"quantized {int8_path.name} ({_megabytes(int8_path)}): same label as torch fp32 on {same_label:.0%} of "
            f"the probe sentences, max probability difference {probability_difference:.4f}"
        )
    return summary


def copy_runtime_files(source: Path, destination: Path) -> list[str]:
    """Copy what a runtime reads beside the ONNX files (config.json, the tokenizer's files) that `source` has."""
    copied = []
    for name in RUNTIME_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
            copied.append(name)
    return copied


def example_inputs(classifier: Classifier) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real sentences of different lengths, padded: the trace sees a mask with padding in it, and a batch and
    sequence of sizes above 1, which torch.export would otherwise specialise as constants."""
    input_ids, attention_mask = _padded(classifier, PROBE_SENTENCES[:2], classifier.max_length)
    if input_ids.shape[1] < 2:
        raise KoSentTypeError("cannot export: the tokenizer turns the probe sentences into fewer than 2 tokens")
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)


def write_fp32_graph(classifier: Classifier, path: Path, opset: int | None) -> int:
    """Export the torch backend's model with dynamic batch and sequence axes; the opset actually written."""
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = OnnxExportWrapper(classifier.backend.model).eval()
    with quiet_libraries():
        try:
            program = torch.onnx.export(
                wrapper,
                example_inputs(classifier),
                input_names=list(INPUT_NAMES),
                output_names=[output_name(head) for head in classifier.heads],
                dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        except KoSentTypeError:
            raise
        except Exception as error:  # torch.export's many failure types, each with a page of advice
            cause = error.__cause__ or error
            raise KoSentTypeError(
                f"cannot export {classifier.name} to ONNX: torch.export could not trace its forward "
                f"({type(cause).__name__}: {_first_line(cause)}); its code needs to be traceable by torch.export"
            ) from None
        program.save(path)  # weights past 2 GB go to model.onnx.data beside it
    written = _default_opset(path)
    if opset is not None and written != opset:
        path.unlink()
        raise KoSentTypeError(
            f"--opset {opset}: torch's exporter can't write it (it wrote opset {written}); try 17 or higher"
        )
    return written


def onnx_twin(classifier: Classifier, path: Path, precision: str) -> Classifier:
    """The same classifier (tokenizer, heads, limits) with `path` running on onnxruntime on the CPU."""
    session = open_session(path, [("CPUExecutionProvider", {})])
    check_outputs(session, classifier.heads, path)
    return replace(classifier, backend=OnnxBackend(session, precision, classifier.heads))


def max_logit_difference(reference: Classifier, candidate: Classifier, sentences: Sequence[str]) -> float:
    """The largest |logit difference| over every head, the candidate run one sentence at a time and as one padded
    batch of every length (mask and padding handling), the reference one at a time (no padding at all)."""
    one_at_a_time = EngineSettings(batch_size=1, max_length=reference.max_length, max_batch_tokens=0)
    one_batch = replace(one_at_a_time, batch_size=len(sentences))
    expected = reference.logits(sentences, one_at_a_time)
    differences = [
        float(np.abs(candidate.logits(sentences, settings)[head] - expected[head]).max())
        for settings in (one_at_a_time, one_batch)
        for head in reference.heads
    ]
    difference = max(differences)
    if not np.isfinite(difference) or difference > MAX_FP32_LOGIT_DIFFERENCE:
        raise KoSentTypeError(
            f"verification failed: the ONNX graph's logits differ from torch's by {difference:.3g} "
            f"(> {MAX_FP32_LOGIT_DIFFERENCE}); nothing was written"
        )
    return difference


def agreement(
    reference: Classifier, candidate: Classifier, sentences: Sequence[str] = PROBE_SENTENCES
) -> tuple[float, float]:
    """(share of sentences with the same type label, max probability difference over every head and label)."""
    settings = EngineSettings(max_length=reference.max_length)
    expected, actual = reference.logits(sentences, settings), candidate.logits(sentences, settings)
    same_label = float(np.mean(expected["type"].argmax(-1) == actual["type"].argmax(-1)))
    difference = max(
        float(np.abs(reference.probabilities(actual[head], head) - reference.probabilities(expected[head], head)).max())
        for head in reference.heads
    )
    return same_label, difference


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime's dynamic quantization of the encoder's matrix multiplications, as torch's int8 does for its
    Linear layers: int8 weights with one scale per output channel, activations quantized per batch as they come.

    The embeddings stay fp32: onnxruntime would quantize them with ONE scale per table, which on the benchmark's
    trained model moved probabilities 0.020 from fp32 (same label on 99.65%) against 0.015 (99.85%) without; the
    12-layer file grows from 107 to 178 MB and loads 0.08 s slower. The heads (the layers that write the graph's
    outputs: a few thousand weights) stay fp32 too, as torch's int8 keeps them.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_libraries():
        quantize_dynamic(
            fp32_path,
            int8_path,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=output_layers(fp32_path),
            use_external_data_format=_has_external_data(fp32_path),
        )


def output_layers(path: Path) -> list[str]:
    """Names of the nodes that compute a graph output directly (the classification heads)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {graph_output.name for graph_output in graph.output}
    return [node.name for node in graph.node if outputs.intersection(node.output)]


def _padded(classifier: Classifier, sentences: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    return pad_batch(classifier.token_ids(sentences, max_length), classifier.pad_token_id)


def _default_opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _has_external_data(path: Path) -> bool:
    return path.with_name(path.name + EXTERNAL_DATA_SUFFIX).exists()


def _megabytes(path: Path) -> str:
    external = path.with_name(path.name + EXTERNAL_DATA_SUFFIX)
    size = path.stat().st_size + (external.stat().st_size if external.exists() else 0)
    return f"{size / 2**20:.1f} MB"


def _first_line(error: BaseException) -> str:
    """The first line of a long message (torch.export's go on for a page), whitespace folded."""
    return " ".join((str(error).strip().splitlines() or [type(error).__name__])[0].split())[:300]


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence what torch, transformers and onnxruntime print while loading, tracing and quantizing (progress bars,
    graph dumps of a failed trace, advice about torchvision or pre-processing): the export reports what matters in
    its own lines. KOSENTTYPE_DEBUG=1 lets it all through."""
    if os.environ.get(DEBUG_VARIABLE):
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
