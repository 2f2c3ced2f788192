"""Speed, peak memory and precision agreement of predict.py against the stock `pipeline`, at the real size.

    python benchmarks/bench_predict.py [--sentences 512] [--quick] [--agreement-model DIR]

Models have the real backbone's shape (RoBERTa, 12 layers, hidden 768, 12 heads, vocabulary 32000) with random
weights, and a WordPiece tokenizer trained on one half of ../shared/data/dacon/train.csv; the timed sentences come
from the other half (read-only; the benchmark exits cleanly when the file is absent). Each variant runs in its own
child process, so each peak RSS is that variant's alone:

  (1) stock `pipeline("text-classification")` over transformers' RobertaForSequenceClassification, batch_size 32;
  (2) this model through the same `pipeline`, batch_size 32;
  (3) predict.py's engine (`classify`, what the command runs) in fp32, bf16 (on CPUs with native bf16) and int8.

Also printed: the machine's measured matmul rate and each variant's useful encoder GFLOP/s, counted from the real
token lengths (2 × linear parameters × tokens + the attention products), so the distance to the hardware's limit
is visible; padding (computed / useful tokens) shows how much of the work was wasted.

Agreement of each reduced precision with fp32 is measured on a TRAINED model (random weights put every
probability near 1/4, where label agreement means nothing): `--agreement-model DIR` (e.g. the quickstart's), or
else a small classifier (hidden 256, 4 layers, 300 steps: about two minutes on 2 cores) trained here with plain
torch on the first half of the data, then compared over the held-out second half. Bar: same label on >= 99.5% of
>= 2,000 sentences and max probability difference <= 0.02. `--quick` runs 64 sentences, 2 layers and a shorter
agreement run. `--repeats 2` interleaves two rounds and keeps each variant's best: use it on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from bench_common import DACON_CSV, MAX_LENGTH, build_speed_models, load_dacon, train_agreement_model
from transformers import pipeline
from transformers.utils.logging import disable_progress_bar

from kosenttype.batching import length_sorted_batches
from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
from kosenttype.engine import CPU_BATCH_TOKENS, EngineSettings, load_classifier
from kosenttype.torch_backend import cpu_has_native_bf16, quantize_linear_layers

PIPELINE_BATCH_SIZE = 32
SAME_LABEL_BAR = 0.995
MAX_PROBABILITY_DIFFERENCE_BAR = 0.02


# ---------------------------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# FLOPs and the machine's limit
# ---------------------------------------------------------------------------------------------------------------


def encoder_flops(batch_shapes: list[tuple[int, int]], hidden: int, layers: int) -> float:
    """FLOPs of the encoder over batches of (sentences, tokens each): 12·h² linear weights per layer at 2 FLOPs
    per multiply-add per token, plus the two attention products (QKᵀ and AV) at 2·2·h·L² per sentence."""
    return sum(layers * count * (24 * hidden**2 * length + 4 * hidden * length**2) for count, length in batch_shapes)


def pipeline_batch_shapes(lengths: list[int], batch_size: int) -> list[tuple[int, int]]:
    """`pipeline` batches consecutive inputs and pads each batch to its longest."""
    return [
        (len(lengths[start : start + batch_size]), max(lengths[start : start + batch_size]))
        for start in range(0, len(lengths), batch_size)
    ]


def predict_batch_shapes(lengths: list[int], settings: EngineSettings) -> list[tuple[int, int]]:
    """predict.py sorts each chunk by length and pads each batch to its own longest."""
    shapes = []
    for start in range(0, len(lengths), settings.chunk_size):
        chunk = lengths[start : start + settings.chunk_size]
        for batch in length_sorted_batches(chunk, settings.batch_size, settings.max_batch_tokens):
            shapes.append((len(batch), max(chunk[index] for index in batch)))
    return shapes


def best_seconds(function: Callable[[], object], repeats: int = 5, calls: int = 5) -> float:
    """Seconds per call, the best of `repeats` rounds: on a shared machine the fastest round is the least disturbed."""
    function()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - start) / calls)
    return min(rounds)


def matmul_rates(rows: int = 2048, hidden: int = 768) -> dict[str, float]:
    """GFLOP/s of the encoder's largest matmul shape (tokens × h → 4h): fp32, bf16 and int8 dynamic Linear."""
    flops = 2 * rows * hidden * 4 * hidden
    rates = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if name == "bf16" and not cpu_has_native_bf16():
                continue
            a, b = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, 4 * hidden, dtype=dtype)
            rates[name] = flops / best_seconds(lambda a=a, b=b: a @ b) / 1e9
        quantized, x = torch.nn.Sequential(torch.nn.Linear(hidden, 4 * hidden)), torch.randn(rows, hidden)
        quantize_linear_layers(quantized)
        rates["int8"] = flops / best_seconds(lambda: quantized(x)) / 1e9
    return rates


# ---------------------------------------------------------------------------------------------------------------
# One variant per child process
# ---------------------------------------------------------------------------------------------------------------

VARIANTS = {
    "pipeline-roberta": "(1) pipeline, transformers RobertaForSequenceClassification",
    "pipeline-kosenttype": "(2) pipeline, KoSentTypeForSequenceClassification",
    "predict-fp32": "(3) predict.py fp32",
    "predict-bf16": "(3) predict.py bf16",
    "predict-int8": "(3) predict.py int8",
}


def time_variant(variant: str, model_dirs: dict[str, str], sentences: list[str], settings: dict) -> float:
    """Seconds to classify `sentences` after a warm-up batch (loading excluded, as a long run amortises it)."""
    warnings.filterwarnings("ignore")
    if variant.startswith("pipeline-"):
        model_dir = model_dirs[variant.removeprefix("pipeline-")]
        classifier = pipeline("text-classification", model=model_dir, trust_remote_code=True, device="cpu")
        tokenizer_options = {"truncation": True, "max_length": MAX_LENGTH}

        def run(texts: list[str]) -> object:
            return classifier(texts, batch_size=PIPELINE_BATCH_SIZE, **tokenizer_options)
    else:
        engine = load_classifier(model_dirs["kosenttype"], device="cpu", precision=variant.removeprefix("predict-"))

        def run(texts: list[str]) -> object:
            return list(engine.classify(texts, **settings))

    run(sentences[:PIPELINE_BATCH_SIZE])
    start = time.perf_counter()
    run(sentences)
    return time.perf_counter() - start


def worker_main(arguments: argparse.Namespace) -> None:
    """Child-process entry: time one variant and print its figures as JSON."""
    payload = json.loads(Path(arguments.worker_input).read_text(encoding="utf-8"))
    seconds = time_variant(arguments.worker, payload["model_dirs"], payload["sentences"], payload["settings"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def run_variant(variant: str, payload_path: Path) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", variant, "--worker-input", str(payload_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Agreement of reduced precisions with fp32
# ---------------------------------------------------------------------------------------------------------------


def probabilities(model_dir: Path, precision: str, sentences: list[str]) -> torch.Tensor:
    """Every label's probability for every sentence, through the same engine the command uses."""
    engine = load_classifier(model_dir, device="cpu", precision=precision)
    labels = engine.labels
    rows = []
    for prediction in engine.classify(sentences, top_k=len(labels)):
        by_label = dict(prediction.top_k)
        rows.append([by_label[label] for label in labels])
    return torch.tensor(rows)


def agreement(model_dir: Path, sentences: list[str], labels: list[int] | None, precisions: list[str]) -> list[dict]:
    reference = probabilities(model_dir, "fp32", sentences)
    results = [{"precision": "fp32", **_accuracy(reference, labels)}]
    for precision in precisions:
        candidate = probabilities(model_dir, precision, sentences)
        same_label = (candidate.argmax(-1) == reference.argmax(-1)).float().mean().item()
        max_difference = (candidate - reference).abs().max().item()
        passed = same_label >= SAME_LABEL_BAR and max_difference <= MAX_PROBABILITY_DIFFERENCE_BAR
        result = {"precision": precision, "same_label": same_label, "max_diff": max_difference, "passed": passed}
        results.append({**result, **_accuracy(candidate, labels)})
    return results


def _accuracy(probabilities_: torch.Tensor, labels: list[int] | None) -> dict:
    """Accuracy and the predicted-label spread: evidence that the model is trained, not a constant guesser."""
    predicted = probabilities_.argmax(-1)
    spread = Counter(predicted.tolist())
    result = {"spread": [spread.get(index, 0) for index in range(probabilities_.shape[1])]}
    if labels is not None:
        result["accuracy"] = (predicted == torch.tensor(labels)).float().mean().item()
    return result


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    capabilities = f"avx512_bf16/amx: {'yes' if cpu_has_native_bf16() else 'no'}"
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, {capabilities}; torch {torch.__version__}, transformers {transformers.__version__}"
        f"; load average {load:.2f} at start (a shared machine: figures are noisy)"
    )


def print_speed_table(results: dict[str, dict], shapes: dict[str, list], lengths: list[int], rates: dict) -> None:
    hidden, layers = KO_SROBERTA_ENCODER["hidden_size"], results["_layers"]
    useful_flops = encoder_flops([(1, length) for length in lengths], hidden, layers)
    baseline = results["pipeline-roberta"]["seconds"]
    header = f"{'variant':<58} {'sent/s':>7} {'x (1)':>6} {'peak RSS MB':>11} {'padded/real':>11} {'GFLOP/s':>8}"
    print(header + f" {'% of matmul':>11}")
    for variant, title in VARIANTS.items():
        if variant not in results:
            continue
        seconds = results[variant]["seconds"]
        padded_tokens = sum(count * length for count, length in shapes[variant])
        achieved = useful_flops / seconds / 1e9
        precision = variant.rsplit("-", 1)[-1] if variant.startswith("predict-") else "fp32"
        print(
            f"{title:<58} {len(lengths) / seconds:>7.1f} {baseline / seconds:>6.2f} "
            f"{results[variant]['peak_rss_mb']:>11.0f} {padded_tokens / sum(lengths):>11.2f} {achieved:>8.1f} "
            f"{100 * achieved / rates[precision]:>10.0f}%"
        )


TABLE_LEGEND = (
    "sent/s: best of the rounds, loading excluded; peak RSS: the variant's own process; padded/real: tokens computed "
    "per real token;\nGFLOP/s: useful encoder FLOPs (real tokens only) per second; % of matmul: of the rate above in "
    "the variant's precision (int8: dynamically quantized Linear)."
)


def print_goals(results: dict[str, dict], variants: list[str]) -> None:
    baseline = results["pipeline-roberta"]["seconds"]
    ours_in_pipeline = baseline / results["pipeline-kosenttype"]["seconds"]
    best = max((v for v in variants if v.startswith("predict-")), key=lambda v: baseline / results[v]["seconds"])
    best_ratio = baseline / results[best]["seconds"]
    print(
        f"\ngoals: (2)/(1) = {ours_in_pipeline:.2f} (>= 0.95: {'met' if ours_in_pipeline >= 0.95 else 'NOT met'}); "
        f"best predict.py ({best.removeprefix('predict-')}) = {best_ratio:.2f}x (1) "
        f"(>= 3: {'met' if best_ratio >= 3 else 'NOT met'})"
    )


def print_agreement(results: list[dict], source: str, count: int) -> None:
    print(f"\nagreement with fp32 on {source}, over {count} dacon sentences ", end="")
    print(f"(bar: same label >= {SAME_LABEL_BAR:.1%}, max probability difference <= {MAX_PROBABILITY_DIFFERENCE_BAR}):")
    for result in results:
        accuracy = f"accuracy {result['accuracy']:.3f}, " if "accuracy" in result else ""
        spread = f"predicted labels {result['spread']}"
        if result["precision"] == "fp32":
            print(f"  fp32  {accuracy}{spread}")
            continue
        verdict = "PASS" if result["passed"] else "FAIL"
        print(
            f"  {result['precision']:<5} same label {result['same_label']:.4%}, max diff {result['max_diff']:.4f} "
            f"-> {verdict}  ({accuracy}{spread})"
        )


def main(argv: list[str] | None = None) -> int:
    disable_progress_bar()  # "Writing model shards"/"Loading weights" bars would drown the table
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512, help="Sentences timed per variant.")
    parser.add_argument("--batch-size", type=int, help="predict.py's batch size (default: its own).")
    parser.add_argument("--max-batch-tokens", type=int, help="predict.py's token budget (default: its own).")
    parser.add_argument("--quick", action="store_true", help="64 sentences, 2 layers, a short agreement run.")
    parser.add_argument("--agreement-model", type=Path, help="A trained classifier folder to measure agreement on.")
    parser.add_argument("--agreement-sentences", type=int, default=2000)
    parser.add_argument("--agreement-train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="Interleaved rounds per variant; the best counts.")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-input", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        worker_main(arguments)
        return 0
    if not DACON_CSV.is_file():
        print(f"skipped: {DACON_CSV} is absent (the benchmark needs real Korean sentences)")
        return 0
    if arguments.quick:
        arguments.sentences, arguments.agreement_sentences, arguments.agreement_train_steps = 64, 2000, 100
    print(machine_line())
    fit_rows, measure_rows = load_dacon(DACON_CSV)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        if not arguments.skip_speed:
            run_speed(Path(folder), arguments, fit_rows, measure_rows)
        if not arguments.skip_agreement:
            run_agreement(Path(folder), arguments, fit_rows, measure_rows)
    return 0


def run_speed(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    layers = 2 if arguments.quick else KO_SROBERTA_ENCODER["num_hidden_layers"]
    roberta_dir, ours_dir = build_speed_models(folder, [text for text, _ in fit_rows], layers)
    sentences = [text for text, _ in measure_rows[: arguments.sentences]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(ours_dir, trust_remote_code=True)
    settings = EngineSettings(
        batch_size=arguments.batch_size or EngineSettings.batch_size,
        max_length=MAX_LENGTH,
        max_batch_tokens=CPU_BATCH_TOKENS if arguments.max_batch_tokens is None else arguments.max_batch_tokens,
    )
    payload = {
        "model_dirs": {"roberta": str(roberta_dir), "kosenttype": str(ours_dir)},
        "sentences": sentences,
        "settings": {"batch_size": settings.batch_size, "max_batch_tokens": settings.max_batch_tokens},
    }
    payload_path = folder / "payload.json"
    payload_path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    rates = matmul_rates()
    lengths = [len(ids) for ids in tokenizer(sentences, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    print(
        f"{len(sentences)} dacon sentences, {sum(lengths) / len(lengths):.1f} tokens on average (max {max(lengths)}); "
        f"{layers} layers, hidden {KO_SROBERTA_ENCODER['hidden_size']}; predict.py batch_size {settings.batch_size}, "
        f"max_batch_tokens {settings.max_batch_tokens or 'none'}"
    )
    variants = [v for v in VARIANTS if v != "predict-bf16" or cpu_has_native_bf16()]
    results: dict = {"_layers": layers}
    for _ in range(arguments.repeats):  # interleaved rounds, best of each: the least disturbed run
        for variant in variants:
            result = run_variant(variant, payload_path)
            if variant not in results or result["seconds"] < results[variant]["seconds"]:
                results[variant] = result
    rates_after = matmul_rates()  # measured again: on a shared machine the better of the two is the hardware's
    shapes = {
        variant: pipeline_batch_shapes(lengths, PIPELINE_BATCH_SIZE)
        if variant.startswith("pipeline-")
        else predict_batch_shapes(lengths, settings)
        for variant in variants
    }
    rates = {name: max(rate, rates_after[name]) for name, rate in rates.items()}
    print("\nmatmul (2048x768 @ 768x3072), best of before and after, GFLOP/s: ", end="")
    print(", ".join(f"{name} {rate:.0f}" for name, rate in rates.items()) + "\n")
    print_speed_table(results, shapes, lengths, rates)
    print(TABLE_LEGEND)
    print_goals(results, variants)


def run_agreement(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    rows = measure_rows[: arguments.agreement_sentences]
    sentences, labels = [text for text, _ in rows], [label for _, label in rows]
    if arguments.agreement_model:
        model_dir, source = arguments.agreement_model, str(arguments.agreement_model)
    else:
        layers = 2 if arguments.quick else 4
        started = time.perf_counter()
        model_dir = train_agreement_model(folder / "agreement", fit_rows, arguments.agreement_train_steps, layers)
        source = (
            f"a small classifier trained here (hidden 256, {layers} layers, {arguments.agreement_train_steps} steps, "
            f"{time.perf_counter() - started:.0f} s)"
        )
    precisions = (["bf16"] if cpu_has_native_bf16() else []) + ["int8"]
    print_agreement(agreement(model_dir, sentences, labels, precisions), source, len(sentences))


if __name__ == "__main__":
    sys.exit(main())
