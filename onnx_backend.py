"""The onnxruntime backend: a folder's `onnx/model.onnx` (fp32) or `onnx/model_quantized.onnx` (int8) run with
onnxruntime and tokenized with `tokenizers`, importing neither torch nor transformers (docs/onnx.md). Graph inputs
`input_ids`, `attention_mask` (int64 [batch, sequence]); outputs `logits` (type) and `<axis>_logits` per attribute."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from .classifier import TYPE_HEAD, Classifier, classifier_from_config, heads_from_config
from .errors import KoSentTypeError, one_line
from .model_location import local_folder

ONNX_FOLDER = "onnx"
# The Hub's file names (Optimum, Transformers.js: dtype "fp32" and "q8").
ONNX_FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx"}
PRECISIONS = ("auto", "fp32", "int8")
# What the backend reads beside the ONNX files; special_tokens_map.json is optional.
RUNTIME_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
INPUT_NAMES = ("input_ids", "attention_mask")
EXTERNAL_DATA_SUFFIX = ".data"  # torch's exporter writes weights past 2 GB to model.onnx.data
THREADS_VARIABLE = "OMP_NUM_THREADS"
# onnxruntime's fused SkipLayerNormalization ran ten times slower on CPU than the Add + LayerNormalization it
# replaces (onnxruntime 1.32, 12-layer model: a fifth of the whole int8 run; docs/onnx.md).
CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]

# What "auto" tries first on a CPU: int8 kept 99.85% of fp32's labels and ran 2.7x as fast (docs/onnx.md).
AUTO_PRECISION_ORDER = ("int8", "fp32")


def output_name(head: str) -> str:
    """`logits` for the type (as Optimum's ORTModelForSequenceClassification reads it), else `<axis>_logits`."""
    return "logits" if head == TYPE_HEAD else f"{head}_logits"


class OnnxBackend:
    """Runs one onnxruntime session; returns each head's float32 logits [batch, labels] under the engine's names."""

    name = "onnxruntime"

    def __init__(self, session: onnxruntime.InferenceSession, precision: str, heads: Mapping[str, list[str]]) -> None:
        self.session, self.precision = session, precision
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.outputs = {head: output_name(head) for head in heads}
        self.inputs = [graph_input.name for graph_input in session.get_inputs()]

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:  # BERT-style graphs exported by other tools take it; one segment here
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        values = self.session.run(list(self.outputs.values()), feeds)
        return {head: np.asarray(value, dtype=np.float32) for head, value in zip(self.outputs, values, strict=True)}


def load_onnx_classifier(
    model: str | os.PathLike, *, device: str = "auto", precision: str = "auto", revision: str | None = None
) -> Classifier:
    """A saved folder's or Hub repository's ONNX file as a `Classifier`: "int8" runs `onnx/model_quantized.onnx`,
    "fp32" `onnx/model.onnx`, "auto" the first of AUTO_PRECISION_ORDER there is (fp32 on a GPU)."""
    if precision not in PRECISIONS:
        raise KoSentTypeError(
            f"--precision {precision}: the onnxruntime backend runs fp32 (onnx/{ONNX_FILES['fp32']}) or int8 "
            f"(onnx/{ONNX_FILES['int8']}); expected one of: {', '.join(PRECISIONS)}"
        )
    providers = execution_providers(device)
    on_cpu = providers[0][0] == "CPUExecutionProvider"
    if precision == "int8" and not on_cpu:
        raise KoSentTypeError("--precision int8 (dynamic quantization) runs on CPU only; use fp32 on a GPU")
    folder, resolved_precision = locate_onnx_files(model, precision, revision, on_cpu=on_cpu)
    config = read_json_file(folder / "config.json", model)
    heads = heads_from_config(config)
    path = folder / ONNX_FOLDER / ONNX_FILES[resolved_precision]
    tokenizer_config = folder / "tokenizer_config.json"
    limit = read_json_file(tokenizer_config, model).get("model_max_length") if tokenizer_config.is_file() else None
    return classifier_from_config(
        open_backend(path, providers, resolved_precision, heads),
        read_tokenizer(folder, model),
        config,
        name=os.fspath(model),
        tokenizer_limit=limit,  # model_limits keeps it only if it is a real limit
    )


def execution_providers(device: str) -> list[tuple[str, dict[str, Any]]]:
    """onnxruntime's providers for `device`: cpu, cuda, cuda:N, or auto (CUDA when this onnxruntime has it)."""
    available = onnxruntime.get_available_providers()
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return [("CPUExecutionProvider", {})]
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise KoSentTypeError(f"unknown device {device!r} (expected cpu, cuda, cuda:N or auto)")
    if "CUDAExecutionProvider" not in available:
        raise KoSentTypeError(
            f"--device {device}: this onnxruntime has no CUDA support (install onnxruntime-gpu, or use --device cpu)"
        )
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), ("CPUExecutionProvider", {})]


def locate_onnx_files(model: str | os.PathLike, precision: str, revision: str | None, on_cpu: bool) -> tuple[Path, str]:
    """The local folder holding config.json, the tokenizer and the ONNX file to run, and that file's precision. A
    Hub id downloads only the files the backend reads (for "auto", the int8 file alone when there is one)."""
    candidates = list(AUTO_PRECISION_ORDER if on_cpu else ("fp32",)) if precision == "auto" else [precision]
    location = local_folder(model)
    for candidate in candidates:
        onnx_file = f"{ONNX_FOLDER}/{ONNX_FILES[candidate]}"
        # with the external data of an export that needed some
        extra_files = [onnx_file, onnx_file + EXTERNAL_DATA_SUFFIX, f"{onnx_file}_data"]
        folder = location if isinstance(location, Path) else hub_snapshot(location, revision, extra_files)
        if (folder / onnx_file).is_file():
            return folder, candidate
    wanted = " or ".join(f"{ONNX_FOLDER}/{ONNX_FILES[candidate]}" for candidate in candidates)
    advice = f"run kosenttype-export-onnx --model {os.fspath(model)}"
    advice += " (int8 is its default), or use --precision fp32" if precision == "int8" else " first"
    raise KoSentTypeError(f"cannot run {os.fspath(model)} on onnxruntime: it has no {wanted}; {advice}")


def hub_snapshot(repo_id: str, revision: str | None, extra_files: Sequence[str] = ()) -> Path:
    """Download (or find in the cache) RUNTIME_FILES and `extra_files` of a Hub repository; its local folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=[*RUNTIME_FILES, *extra_files]))
    except Exception as error:  # the Hub client raises many types for "can't get it" (offline, missing, private)
        message = f"cannot load model {repo_id} from the Hub: {type(error).__name__}: {one_line(error)}"
        raise KoSentTypeError(message) from None


def read_json_file(path: Path, model: str | os.PathLike) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KoSentTypeError(f"cannot load model {os.fspath(model)}: it has no {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise KoSentTypeError(f"cannot read {path}: {one_line(error)}") from None
    if not isinstance(value, dict):
        raise KoSentTypeError(f"cannot read {path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_tokenizer(folder: Path, model: str | os.PathLike) -> Tokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise KoSentTypeError(
            f"cannot run {os.fspath(model)} on onnxruntime: it has no tokenizer.json (the fast tokenizer's file, "
            "which the onnxruntime backend tokenizes with); save the tokenizer with a fast tokenizer class"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a malformed file
        raise KoSentTypeError(f"cannot read {path}: {one_line(error)}") from None


def session_options(threads: int | None) -> onnxruntime.SessionOptions:
    """`threads`, else OMP_NUM_THREADS (onnxruntime's default build never reads it), else one per core."""
    options = onnxruntime.SessionOptions()
    if threads is None and os.environ.get(THREADS_VARIABLE, "").strip().isdigit():
        threads = int(os.environ[THREADS_VARIABLE])
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings (e.g. unused initializers) are not the user's
    return options


def open_backend(
    path: Path, providers: list[tuple[str, dict[str, Any]]], precision: str, heads: Mapping[str, list[str]]
) -> OnnxBackend:
    """`path` on onnxruntime, once its inputs and its outputs for `heads` are known to be the ones the backend uses."""
    session = open_session(path, providers)
    check_outputs(session, heads, path)
    return OnnxBackend(session, precision, heads)


def open_session(path: Path, providers: list[tuple[str, dict[str, Any]]]) -> onnxruntime.InferenceSession:
    """An inference session on `path`, refusing a corrupt or truncated file in one line."""
    try:
        return onnxruntime.InferenceSession(
            str(path),
            sess_options=session_options(None),
            providers=[name for name, _ in providers],
            provider_options=[options for _, options in providers],
            disabled_optimizers=CPU_DISABLED_OPTIMIZERS if providers[0][0] == "CPUExecutionProvider" else [],
        )
    except Exception as error:  # onnxruntime's pybind errors (InvalidProtobuf, Fail, …) share no useful base
        raise KoSentTypeError(
            f"cannot load {path}: not a valid ONNX model ({type(error).__name__}: {one_line(error, 200)}); "
            "export it again with kosenttype-export-onnx"
        ) from None


def check_outputs(session: onnxruntime.InferenceSession, heads: Mapping[str, list[str]], path: Path) -> None:
    """Every head the config names must be a graph output of its width, and the inputs the ones we feed."""
    inputs = {graph_input.name for graph_input in session.get_inputs()}
    outputs = {graph_output.name: graph_output.shape for graph_output in session.get_outputs()}
    missing_inputs = [name for name in INPUT_NAMES if name not in inputs]
    if missing_inputs:
        raise KoSentTypeError(f"{path} has no input {', '.join(missing_inputs)} (inputs: {', '.join(sorted(inputs))})")
    for head, labels in heads.items():
        name = output_name(head)
        if name not in outputs:
            raise KoSentTypeError(
                f"{path} has no output {name!r} for head {head!r} of config.json (outputs: {', '.join(outputs)}); "
                "export it again with kosenttype-export-onnx"
            )
        width = outputs[name][-1] if outputs[name] else None
        if isinstance(width, int) and width != len(labels):
            raise KoSentTypeError(
                f"{path}: output {name!r} has {width} labels, config.json's {head!r} head {len(labels)}; "
                "the ONNX file belongs to another model: export it again"
            )
