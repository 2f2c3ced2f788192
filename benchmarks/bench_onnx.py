"""onnxruntime against torch: sentences/s, agreement with torch fp32, and the cold start of kosenttype-predict.

    python benchmarks/bench_onnx.py [--sentences 384] [--threads 2] [--repeats 2] [--quick] [--agreement-model DIR]

Speed runs on the real backbone's shape (RoBERTa, 12 layers, hidden 768, vocabulary 32000) with random weights and
a WordPiece tokenizer trained on one half of ../shared/data/dacon/train.csv; the timed sentences come from the other
half (read-only; the benchmark exits cleanly when the file is absent). Each variant runs in its own child process
with the same number of threads, after a warm-up batch, loading excluded:

  stock        `pipeline("text-classification")` over transformers' RobertaForSequenceClassification (the baseline);
  torch        the engine on the torch backend (what `kosenttype-predict` runs): fp32, bf16 (CPUs with native bf16),
               int8 (dynamic, per-channel);
  onnxruntime  the engine on `onnx/model.onnx` (fp32) and `onnx/model_quantized.onnx` (int8), as exported by
               `kosenttype-export-onnx`.

Agreement with torch fp32 is measured on a TRAINED model (random weights put every probability near 1/4, where label
agreement means nothing): `--agreement-model DIR`, or a small classifier (hidden 256, 4 layers) trained here with
plain torch on the first half of the data and compared over held-out sentences. Bar, as for the torch precisions
(benchmarks/bench_predict.py): same label on >= 99.5% and max probability difference <= 0.02.

Cold start: wall time from launching `kosenttype-predict` on the 12-layer model to its first output record on
stdout, per backend and precision (best of --cold-runs, file cache warm). Targets: onnxruntime int8 >= torch int8 in
sentences/s, and its cold start <= 1.5 s.
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
from pathlib import Path

from bench_common import DACON_CSV, MAX_LENGTH, build_speed_models, load_dacon, train_agreement_model

PIPELINE_BATCH_SIZE = 32
SAME_LABEL_BAR = 0.995
MAX_PROBABILITY_DIFFERENCE_BAR = 0.02
COLD_START_TARGET_S = 1.5
VARIANTS = {
    "stock": "stock pipeline, RobertaForSequenceClassification fp32",
    "torch-fp32": "engine, torch fp32",
    "torch-bf16": "engine, torch bf16",
    "torch-int8": "engine, torch int8",
    "onnxruntime-fp32": "engine, onnxruntime fp32 (model.onnx)",
    "onnxruntime-int8": "engine, onnxruntime int8 (model_quantized.onnx)",
}


# ---------------------------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------------------------


def export(model_dir: Path) -> float:
    """`kosenttype-export-onnx`'s library call into the folder's own onnx/ (fp32 and int8); seconds it took."""
    from kosenttype.onnx_export import export_onnx

    started = time.perf_counter()
    (model_dir / "onnx").mkdir()
    export_onnx(model_dir, model_dir / "onnx", report=lambda line: print(f"  {line}"))
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------------------
# One variant per child process
# ---------------------------------------------------------------------------------------------------------------


def classify_function(variant: str, model_dirs: dict[str, str], threads: int):
    """A function that classifies a list of sentences in `variant`, model loaded (loading is not timed)."""
    warnings.filterwarnings("ignore")
    if variant == "stock":
        import torch
        from transformers import pipeline

        torch.set_num_threads(threads)
        classifier = pipeline("text-classification", model=model_dirs["stock"], device="cpu")
        options = {"batch_size": PIPELINE_BATCH_SIZE, "truncation": True, "max_length": MAX_LENGTH}
        return lambda sentences: classifier(sentences, **options)
    from kosenttype.engine import load_classifier

    backend, precision = variant.split("-")
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    classifier = load_classifier(model_dirs["ours"], backend=backend, device="cpu", precision=precision)
    return lambda sentences: list(classifier.classify(sentences, max_length=MAX_LENGTH))


def worker_main(variant: str, payload_path: str) -> None:
    """Child-process entry: time one variant (best of two passes after a warm-up) and print its figures as JSON."""
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    sentences = payload["sentences"]
    run = classify_function(variant, payload["model_dirs"], payload["threads"])
    run(sentences[:PIPELINE_BATCH_SIZE])
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        run(sentences)
        passes.append(time.perf_counter() - started)
    print(json.dumps({"seconds": min(passes), "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from
    the parent through fork and exec, so every child would report at least the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_environment(threads: int) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}


def run_variant(variant: str, payload_path: Path, threads: int) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", variant, "--worker-input", str(payload_path)],
        capture_output=True,
        text=True,
        env=child_environment(threads),
        timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------
# Cold start and agreement
# ---------------------------------------------------------------------------------------------------------------


def cold_start_seconds(model_dir: Path, backend: str, precision: str, input_path: Path, threads: int) -> float:
    """Launch of `kosenttype-predict` to its first output record on stdout."""
    command = [sys.executable, "-m", "kosenttype.predict", "--model", str(model_dir), "--input", str(input_path)]
    command += ["--backend", backend, "--precision", precision, "--threads", str(threads)]
    started = time.perf_counter()
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_environment(threads),
        cwd=tempfile.gettempdir(),
    ) as process:
        first_line = process.stdout.readline()
        elapsed = time.perf_counter() - started
        process.communicate(timeout=300)
    if not first_line.startswith(b"{"):
        raise RuntimeError(f"kosenttype-predict --backend {backend} --precision {precision} printed no record")
    return elapsed


def agreement(model_dir: Path, sentences: list[str], labels: list[int], variants: list[tuple[str, str]]) -> list[dict]:
    """Each (backend, precision) against torch fp32: same label, max probability difference, accuracy."""
    import numpy as np

    from kosenttype.engine import load_classifier

    def probabilities(backend: str, precision: str) -> np.ndarray:
        classifier = load_classifier(model_dir, backend=backend, device="cpu", precision=precision)
        return classifier.probabilities(classifier.logits(sentences)["type"])

    reference = probabilities("torch", "fp32")
    truth = np.array(labels)
    results = [{"variant": "torch-fp32", "accuracy": float((reference.argmax(-1) == truth).mean())}]
    for backend, precision in variants:
        candidate = probabilities(backend, precision)
        same_label = float((candidate.argmax(-1) == reference.argmax(-1)).mean())
        difference = float(np.abs(candidate - reference).max())
        passed = same_label >= SAME_LABEL_BAR and difference <= MAX_PROBABILITY_DIFFERENCE_BAR
        accuracy = float((candidate.argmax(-1) == truth).mean())
        results.append(
            {
                "variant": f"{backend}-{precision}",
                "same_label": same_label,
                "max_diff": difference,
                "passed": passed,
                "accuracy": accuracy,
            }
        )
    return results


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def machine_line(threads: int) -> str:
    import onnxruntime
    import torch
    import transformers

    from kosenttype.torch_backend import cpu_has_native_bf16

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads per variant, "
        f"avx512_bf16/amx: {'yes' if cpu_has_native_bf16() else 'no'}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, onnxruntime {onnxruntime.__version__}; load average {load:.2f} at start"
    )


def print_speed(results: dict[str, dict], cold: dict[str, float], count: int) -> None:
    baseline = results["stock"]["seconds"]
    print(f"\n{'variant':<48} {'sent/s':>7} {'x stock':>7} {'peak RSS MB':>11} {'cold start s':>12}")
    for variant, title in VARIANTS.items():
        if variant not in results:
            continue
        seconds = results[variant]["seconds"]
        cold_start = f"{cold[variant]:.2f}" if variant in cold else "-"
        print(
            f"{title:<48} {count / seconds:>7.1f} {baseline / seconds:>7.2f} "
            f"{results[variant]['peak_rss_mb']:>11.0f} {cold_start:>12}"
        )
    print(
        "sent/s: best of 2 passes (and of the rounds), loading excluded; peak RSS: the variant's own process; cold "
        "start: launch of kosenttype-predict to its first output record, best of the runs."
    )


def print_targets(results: dict[str, dict], cold: dict[str, float]) -> None:
    ratio = results["torch-int8"]["seconds"] / results["onnxruntime-int8"]["seconds"]
    onnx_cold = cold["onnxruntime-int8"]
    fastest_torch = min(seconds for variant, seconds in cold.items() if variant.startswith("torch"))
    print(
        f"\ntargets: onnxruntime int8 = {ratio:.2f}x torch int8 in sentences/s "
        f"(>= 1: {'met' if ratio >= 1 else 'NOT met'}); onnxruntime int8 cold start {onnx_cold:.2f} s "
        f"(<= {COLD_START_TARGET_S}: {'met' if onnx_cold <= COLD_START_TARGET_S else 'NOT met'}), "
        f"{fastest_torch / onnx_cold:.1f}x faster than torch's fastest"
    )


def print_agreement(results: list[dict], source: str, count: int) -> None:
    print(f"\nagreement with torch fp32 on {source}, over {count} held-out dacon sentences ", end="")
    print(f"(bar: same label >= {SAME_LABEL_BAR:.1%}, max probability difference <= {MAX_PROBABILITY_DIFFERENCE_BAR}):")
    for result in results:
        if "same_label" not in result:
            print(f"  {result['variant']:<17} accuracy {result['accuracy']:.3f}")
            continue
        verdict = "PASS" if result["passed"] else "FAIL"
        print(
            f"  {result['variant']:<17} same label {result['same_label']:.2%}, max diff {result['max_diff']:.4f} -> "
            f"{verdict} (accuracy {result['accuracy']:.3f})"
        )


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------


def run_speed(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    from kosenttype.torch_backend import cpu_has_native_bf16

    layers = 2 if arguments.quick else 12
    stock_dir, ours_dir = build_speed_models(folder, [text for text, _ in fit_rows], layers)
    print(f"exporting the {layers}-layer model:")
    print(f"  exported in {export(ours_dir):.0f} s")
    sentences = [text for text, _ in measure_rows[: arguments.sentences]]
    payload_path = folder / "payload.json"
    payload = {"model_dirs": {"stock": str(stock_dir), "ours": str(ours_dir)}, "sentences": sentences}
    payload_path.write_text(json.dumps({**payload, "threads": arguments.threads}, ensure_ascii=False), "utf-8")
    variants = [variant for variant in VARIANTS if variant != "torch-bf16" or cpu_has_native_bf16()]
    print(f"timing {len(sentences)} dacon sentences, {layers} layers, {arguments.threads} threads:", flush=True)
    results: dict[str, dict] = {}
    for _ in range(arguments.repeats):  # interleaved rounds, best of each: the least disturbed run counts
        for variant in variants:
            result = run_variant(variant, payload_path, arguments.threads)
            if variant not in results or result["seconds"] < results[variant]["seconds"]:
                results[variant] = result
    input_path = folder / "cold_start.txt"
    input_path.write_text("\n".join(sentences[:8]) + "\n", encoding="utf-8")
    cold = {}
    for variant in (v for v in variants if v != "stock"):
        backend, precision = variant.split("-")
        runs = range(arguments.cold_runs)
        cold[variant] = min(
            cold_start_seconds(ours_dir, backend, precision, input_path, arguments.threads) for _ in runs
        )
    print_speed(results, cold, len(sentences))
    print_targets(results, cold)


def run_agreement(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    from kosenttype.torch_backend import cpu_has_native_bf16

    rows = measure_rows[: arguments.agreement_sentences]
    if arguments.agreement_model:
        model_dir, source = arguments.agreement_model, str(arguments.agreement_model)
        if not (model_dir / "onnx").is_dir():
            raise SystemExit(f"{model_dir} has no onnx/ folder: run kosenttype-export-onnx --model {model_dir} first")
    else:
        layers, started = (2 if arguments.quick else 4), time.perf_counter()
        model_dir = train_agreement_model(folder / "agreement", fit_rows, arguments.agreement_train_steps, layers)
        print("\nexporting the agreement model:")
        export(model_dir)
        source = (
            f"a small classifier trained here (hidden 256, {layers} layers, {arguments.agreement_train_steps} steps, "
            f"{time.perf_counter() - started:.0f} s with its export)"
        )
    variants = [("torch", "bf16")] if cpu_has_native_bf16() else []
    variants += [("torch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    results = agreement(model_dir, [text for text, _ in rows], [label for _, label in rows], variants)
    print_agreement(results, source, len(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=384, help="Sentences timed per variant.")
    parser.add_argument("--threads", type=int, default=2, help="Threads per variant (torch and onnxruntime).")
    parser.add_argument("--repeats", type=int, default=1, help="Interleaved rounds per variant; the best counts.")
    parser.add_argument("--cold-runs", type=int, default=2, help="kosenttype-predict launches per variant.")
    parser.add_argument("--quick", action="store_true", help="64 sentences, 2 layers, a short agreement run.")
    parser.add_argument("--agreement-model", type=Path, help="A trained, exported classifier folder.")
    parser.add_argument("--agreement-sentences", type=int, default=2000)
    parser.add_argument("--agreement-train-steps", type=int, default=300)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-input", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        worker_main(arguments.worker, arguments.worker_input)
        return 0
    if not DACON_CSV.is_file():
        print(f"skipped: {DACON_CSV} is absent (the benchmark needs real Korean sentences)")
        return 0
    if arguments.quick:
        arguments.sentences, arguments.agreement_train_steps = 64, 100
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()
    print(machine_line(arguments.threads))
    fit_rows, measure_rows = load_dacon(DACON_CSV)
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as folder:
        if not arguments.skip_speed:
            run_speed(Path(folder), arguments, fit_rows, measure_rows)
        if not arguments.skip_agreement:
            run_agreement(Path(folder), arguments, fit_rows, measure_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
