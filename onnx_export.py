"""Export a saved classifier to ONNX with torch's `torch.export`-based exporter (its symbolic shapes keep the logits
within 1e-7 of torch's, where the TorchScript tracer's were 0.035 away; docs/onnx.md), prove it predicts what torch
predicts, and quantize it to int8. Always into a staging folder, so that a failed check leaves nothing behind."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .batching import pad_batch
from .classifier import TYPE_HEAD, Classifier, EngineSettings
from .errors import DEBUG_VARIABLE, KoSentTypeError
from .folder_verification import VERIFICATION_SENTENCES
from .onnx_backend import EXTERNAL_DATA_SUFFIX, INPUT_NAMES, ONNX_FILES, RUNTIME_FILES, open_backend, output_name
from .torch_backend import load_torch_classifier

QUANTIZE_CHOICES = ("none", "int8")
# The most the fp32 graph's logits may differ from torch's: float32 rounding of a re-ordered computation stays
# around 1e-6; anything near 1e-4 is a real difference in the graph.
MAX_FP32_LOGIT_DIFFERENCE = 1e-4
# The converter's check sentences (each sentence type, emoji, Latin script, one far past 256 tokens, which the
# check truncates at the model's own limit), plus a one-word sentence and a long one with numbers.
PROBE_SENTENCES = [
    *(sentence for sentence in VERIFICATION_SENTENCES if sentence),
    "네.",
    "올해 3분기 영업이익은 1조 2천억 원으로 집계됐으며, 시장에서는 4분기에도 비슷한 흐름이 이어질 것으로 본다.",
]


class OnnxExportWrapper(nn.Module):
    """The logits of every head as a plain tuple: a ModelOutput's optional fields would vary the graph's outputs."""

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
) -> list[Path]:
    """Write `destination/model.onnx` (fp32) and, with `quantize="int8"`, `destination/model_quantized.onnx`; the
    files written. The fp32 graph must reproduce torch's logits within MAX_FP32_LOGIT_DIFFERENCE on PROBE_SENTENCES
    (KoSentTypeError otherwise); the int8 file's agreement is reported, not enforced (it depends on the training)."""
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
    difference = max_logit_difference(reference, onnx_twin(reference, fp32_path, "fp32"), PROBE_SENTENCES)
    report(
        f"verified {fp32_path.name} (opset {written_opset}, {_megabytes(fp32_path)}): max abs logit difference "
        f"{difference:.2g} from torch over {len(PROBE_SENTENCES)} probe sentences, one at a time and as one padded "
        f"batch, up to {reference.max_length} tokens"
    )
    if quantize == "none":
        return [fp32_path]
    int8_path = destination / ONNX_FILES["int8"]
    quantize_int8(fp32_path, int8_path)
    same_label, probability_difference = agreement(reference, onnx_twin(reference, int8_path, "int8"))
    report(
        f"quantized {int8_path.name} ({_megabytes(int8_path)}): same label as torch fp32 on {same_label:.0%} of "
        f"the probe sentences, max probability difference {probability_difference:.4f}"
    )
    return [fp32_path, int8_path]


def copy_runtime_files(source: Path, destination: Path) -> list[str]:
    """Copy what a runtime reads beside the ONNX files (config.json, the tokenizer's files) that `source` has."""
    copied = [name for name in RUNTIME_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copyfile(source / name, destination / name)
    return copied


def write_fp32_graph(classifier: Classifier, path: Path, opset: int | None) -> int:
    """Export the torch backend's model with dynamic batch and sequence axes; the opset actually written. The
    example is two real sentences of different lengths, padded, so that the trace sees padding in the mask and
    axes above 1, which torch.export would otherwise specialise as constants."""
    token_ids = classifier.token_ids(PROBE_SENTENCES[:2], classifier.max_length)
    input_ids, attention_mask = pad_batch(token_ids, classifier.pad_token_id)
    if input_ids.shape[1] < 2:
        raise KoSentTypeError("cannot export: the tokenizer turns the probe sentences into fewer than 2 tokens")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with quiet_libraries():
        try:
            program = torch.onnx.export(
                OnnxExportWrapper(classifier.backend.model).eval(),
                (torch.from_numpy(input_ids), torch.from_numpy(attention_mask)),
                input_names=list(INPUT_NAMES),
                output_names=[output_name(head) for head in classifier.heads],
                dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        except Exception as error:  # torch.export's many failure types, each with a page of advice
            cause = error.__cause__ or error
            first_line = " ".join((str(cause).strip().splitlines() or [type(cause).__name__])[0].split())[:300]
            raise KoSentTypeError(
                f"cannot export {classifier.name} to ONNX: torch.export could not trace its forward "
                f"({type(cause).__name__}: {first_line}); its code needs to be traceable by torch.export"
            ) from None
        program.save(path)  # weights past 2 GB go to model.onnx.data beside it
    graph = onnx.load(str(path), load_external_data=False)
    written = next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        path.unlink()
        raise KoSentTypeError(
            f"--opset {opset}: torch's exporter can't write it (it wrote opset {written}); try 17 or higher"
        )
    return written


def onnx_twin(classifier: Classifier, path: Path, precision: str) -> Classifier:
    """The same classifier (tokenizer, heads, limits) with `path` running on onnxruntime on the CPU."""
    return replace(classifier, backend=open_backend(path, [("CPUExecutionProvider", {})], precision, classifier.heads))


def max_logit_difference(reference: Classifier, candidate: Classifier, sentences: Sequence[str]) -> float:
    """The largest |logit difference| over every head, the candidate run one sentence at a time and as one padded
    batch of every length (mask and padding handling), the reference one at a time (no padding at all)."""
    one_at_a_time = EngineSettings(batch_size=1, max_length=reference.max_length, max_batch_tokens=0)
    one_batch = replace(one_at_a_time, batch_size=len(sentences))
    expected = reference.logits(sentences, one_at_a_time)
    difference = max(
        float(np.abs(candidate.logits(sentences, settings)[head] - expected[head]).max())
        for settings in (one_at_a_time, one_batch)
        for head in reference.heads
    )
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
    same_label = float(np.mean(expected[TYPE_HEAD].argmax(-1) == actual[TYPE_HEAD].argmax(-1)))
    difference = max(
        float(np.abs(reference.probabilities(actual[head], head) - reference.probabilities(expected[head], head)).max())
        for head in reference.heads
    )
    return same_label, difference


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime's dynamic quantization of the matrix multiplications (per-channel int8 weights), as torch's int8
    does for its Linear layers. The embeddings (one scale per table lost labels, docs/onnx.md) and the heads (the
    nodes writing the graph's outputs) stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    outputs = {graph_output.name for graph_output in graph.output}
    with quiet_libraries():
        quantize_dynamic(
            fp32_path,
            int8_path,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=[node.name for node in graph.node if outputs.intersection(node.output)],
            use_external_data_format=external_data(fp32_path).exists(),
        )


def external_data(path: Path) -> Path:
    return path.with_name(path.name + EXTERNAL_DATA_SUFFIX)


def _megabytes(path: Path) -> str:
    external = external_data(path)
    size = path.stat().st_size + (external.stat().st_size if external.exists() else 0)
    return f"{size / 2**20:.1f} MB"


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the libraries' prints and logs (the export reports in its own lines); KOSENTTYPE_DEBUG=1 keeps them."""
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
