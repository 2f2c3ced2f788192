"""Prediction at the real backbone's size: the engine on each backend and precision against the stock `pipeline`.

    python benchmarks/bench_predict.py [--backends torch,onnxruntime] [--sentences 512] [--threads 2] [--repeats 2]
        [--quick] [--agreement-model DIR] [--skip-speed] [--skip-agreement]

Per variant, each in its own child process: sentences/s and its ratio to the stock pipeline, peak RSS, padding,
useful GFLOP/s against the machine's matmul rate, and the cold start of `kosenttype-predict`; then each variant's
agreement with torch fp32 on a trained model. What each figure means: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from bench_common import (
    DACON_CSV,
    MAX_LENGTH,
    SENTENCE_TYPES,
    backbone_shaped_model,
    child_env,
    json_child,
    load_dacon,
    peak_rss_mb,
)

from kosenttype.engine import CPU_BATCH_TOKENS, DEFAULT_BATCH_SIZE

PIPELINE_BATCH_SIZE = 32
SAME_LABEL_BAR = 0.995
MAX_PROBABILITY_DIFFERENCE_BAR = 0.02
COLD_START_TARGET_S = 1.5
TRAIN_MAX_LENGTH = 64  # the agreement model's: few dacon sentences are longer, and training stays short
VARIANTS = {
    "stock": "(1) stock pipeline, RobertaForSequenceClassification fp32",
    "pipeline": "(2) the same pipeline, KoSentTypeForSequenceClassification",
    "torch-fp32": "(3) engine, torch fp32",
    "torch-bf16": "(3) engine, torch bf16",
    "torch-int8": "(3) engine, torch int8",
    "onnxruntime-fp32": "(3) engine, onnxruntime fp32 (model.onnx)",
    "onnxruntime-int8": "(3) engine, onnxruntime int8 (model_quantized.onnx)",
}


def engine_variants(backends: list[str]) -> list[str]:
    from kosenttype.torch_backend import cpu_has_native_bf16

    engine = [variant for variant in VARIANTS if variant.split("-")[0] in backends]
    return [variant for variant in engine if variant != "torch-bf16" or cpu_has_native_bf16()]


def build_speed_models(folder: Path, fit_sentences: list[str], layers: int) -> tuple[Path, Path]:
    """transformers' RoBERTa classifier and ours at the backbone's shape, random weights, one shared tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(fit_sentences, vocab_size=KO_SROBERTA_ENCODER["vocab_size"])
    encoder = {**KO_SROBERTA_ENCODER, "num_hidden_layers": layers}
    labels = {"id2label": dict(enumerate(SENTENCE_TYPES)), "label2id": {v: k for k, v in enumerate(SENTENCE_TYPES)}}
    torch.manual_seed(0)
    stock_dir = folder / "roberta"
    stock_config = RobertaConfig(**{key: value for key, value in encoder.items() if key != "model_type"}, **labels)
    RobertaForSequenceClassification(stock_config).save_pretrained(stock_dir)
    save_tokenizer_for_hub(tokenizer, stock_dir, max_length=MAX_LENGTH)
    return stock_dir, backbone_shaped_model(folder / "kosenttype", fit_sentences, layers, tokenizer)


def train_agreement_model(folder: Path, rows: list[tuple[str, int]], steps: int, layers: int) -> Path:
    """A small classifier trained from scratch, so that its probabilities have real margins to disagree on.
    Classes are sampled evenly (the data is 82% 사실형), so the comparison also covers the rare labels."""
    import torch

    from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer

    sentences, labels = [text for text, _ in rows], torch.tensor([label for _, label in rows])
    tokenizer = train_wordpiece_tokenizer(sentences, vocab_size=8000)
    encoder = tiny_encoder_config(len(tokenizer), hidden_size=256, num_layers=layers, max_length=TRAIN_MAX_LENGTH)
    torch.manual_seed(0)
    model = KoSentTypeForSequenceClassification(KoSentTypeConfig(encoder_config=encoder, backbone_name=None)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (steps // 10 + 1)))
    sample_weights = (1.0 / torch.bincount(labels, minlength=len(SENTENCE_TYPES)).clamp(min=1).float())[labels]
    for _ in range(steps):
        batch = torch.multinomial(sample_weights, 32, replacement=True).tolist()
        texts = [sentences[i] for i in batch]
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=TRAIN_MAX_LENGTH, return_tensors="pt")
        model(**inputs, labels=labels[batch]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    save_tokenizer_for_hub(tokenizer, folder, max_length=TRAIN_MAX_LENGTH)
    return folder


def encoder_flops(batch_shapes: list[tuple[int, int]], hidden: int, layers: int) -> float:
    """FLOPs of the encoder over batches of (sentences, tokens each): 12·h² linear weights per layer at 2 FLOPs
    per multiply-add per token, plus the two attention products (QKᵀ and AV) at 2·2·h·L² per sentence."""
    return sum(layers * count * (24 * hidden**2 * length + 4 * hidden * length**2) for count, length in batch_shapes)


def batch_shapes(variant: str, lengths: list[int], settings) -> list[tuple[int, int]]:
    """(sentences, padded tokens) per batch: `pipeline` pads consecutive inputs to each batch's longest; the
    engine sorts each chunk by length and pads each token-budgeted batch to its own longest."""
    from kosenttype.batching import length_sorted_batches

    if variant in ("stock", "pipeline"):
        starts = range(0, len(lengths), PIPELINE_BATCH_SIZE)
        return [(len(lengths[i : i + PIPELINE_BATCH_SIZE]), max(lengths[i : i + PIPELINE_BATCH_SIZE])) for i in starts]
    shapes = []
    for start in range(0, len(lengths), settings.chunk_size):
        chunk = lengths[start : start + settings.chunk_size]
        for batch in length_sorted_batches(chunk, settings.batch_size, settings.max_batch_tokens):
            shapes.append((len(batch), max(chunk[index] for index in batch)))
    return shapes


def best_seconds(function: Callable[[], object], repeats: int = 5, calls: int = 5) -> float:
    """Seconds per call, the best of `repeats` rounds: on a shared machine the fastest round is the least disturbed."""
    function()
    return min(timeit.repeat(function, number=calls, repeat=repeats)) / calls


def matmul_rates(rows: int = 2048, hidden: int = 768) -> dict[str, float]:
    """GFLOP/s of the encoder's largest matmul shape (tokens × h → 4h): fp32, bf16 and int8 dynamic Linear."""
    import torch

    from kosenttype.torch_backend import cpu_has_native_bf16, quantize_linear_layers

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


def classify_function(variant: str, payload: dict) -> Callable[[list[str]], object]:
    """A function that classifies a list of sentences in `variant`, model loaded (loading is not timed)."""
    warnings.filterwarnings("ignore")
    model_dirs, threads = payload["model_dirs"], payload["threads"]
    if variant in ("stock", "pipeline"):
        import torch
        from transformers import pipeline

        torch.set_num_threads(threads)
        model = model_dirs["stock" if variant == "stock" else "ours"]
        classifier = pipeline("text-classification", model=model, trust_remote_code=True, device="cpu")
        options = {"batch_size": PIPELINE_BATCH_SIZE, "truncation": True, "max_length": MAX_LENGTH}
        return lambda sentences: classifier(sentences, **options)
    from kosenttype.engine import limit_threads, load_classifier

    backend, precision = variant.split("-")
    limit_threads(threads, backend)
    classifier = load_classifier(model_dirs["ours"], backend=backend, device="cpu", precision=precision)
    return lambda sentences: list(classifier.classify(sentences, max_length=MAX_LENGTH, **payload["settings"]))


def worker_main(variant: str, payload_path: str) -> None:
    """Child-process entry: time one variant (best of two passes after a warm-up) and print its figures as JSON."""
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    sentences = payload["sentences"]
    run = classify_function(variant, payload)
    run(sentences[:PIPELINE_BATCH_SIZE])
    seconds = min(timeit.repeat(lambda: run(sentences), number=1, repeat=2))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def threads_env(threads: int) -> dict[str, str]:
    return child_env(OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")


def cold_start_seconds(model_dir: Path, variant: str, input_path: Path, threads: int) -> float:
    """Launch of `kosenttype-predict` to its first output record on stdout."""
    backend, precision = variant.split("-")
    command = [sys.executable, "-m", "kosenttype.predict", "--model", str(model_dir), "--input", str(input_path)]
    command += ["--backend", backend, "--precision", precision, "--threads", str(threads)]
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=threads_env(threads), cwd=tempfile.gettempdir()
    ) as process:
        first_line = process.stdout.readline()
        elapsed = time.perf_counter() - started
        process.communicate(timeout=300)
    if not first_line.startswith(b"{"):
        raise RuntimeError(f"kosenttype-predict --backend {backend} --precision {precision} printed no record")
    return elapsed


def agreement(model_dir: Path, sentences: list[str], labels: list[int], variants: list[str]) -> list[dict]:
    """Each variant against torch fp32: same label, max probability difference; every variant's accuracy and
    predicted-label spread (evidence that the model is trained, not a constant guesser)."""
    import numpy as np

    from kosenttype.engine import load_classifier

    truth = np.array(labels)
    results, reference = [], None
    for variant in ["torch-fp32", *(v for v in variants if v != "torch-fp32")]:
        backend, precision = variant.split("-")
        classifier = load_classifier(model_dir, backend=backend, device="cpu", precision=precision)
        probabilities = classifier.probabilities(classifier.logits(sentences)["type"])
        predicted = probabilities.argmax(-1)
        spread = np.bincount(predicted, minlength=probabilities.shape[1]).tolist()
        results.append({"variant": variant, "accuracy": float((predicted == truth).mean()), "spread": spread})
        if reference is None:
            reference = probabilities
            continue
        same_label = float((predicted == reference.argmax(-1)).mean())
        difference = float(np.abs(probabilities - reference).max())
        passed = same_label >= SAME_LABEL_BAR and difference <= MAX_PROBABILITY_DIFFERENCE_BAR
        results[-1].update(same_label=same_label, max_diff=difference, passed=passed)
    return results


def machine_line(threads: int, backends: list[str]) -> str:
    from kosenttype.torch_backend import cpu_has_native_bf16

    libraries = ["torch", "transformers", *(["onnxruntime"] if "onnxruntime" in backends else [])]
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads per variant, "
        f"avx512_bf16/amx: {'yes' if cpu_has_native_bf16() else 'no'}; "
        f"{', '.join(f'{name} {version(name)}' for name in libraries)}; load average {os.getloadavg()[0]:.2f} at start"
    )


def print_speed(results: dict[str, dict], cold: dict[str, float], lengths: list[int], layers: int, rates: dict) -> None:
    from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER

    useful_flops = encoder_flops([(1, length) for length in lengths], KO_SROBERTA_ENCODER["hidden_size"], layers)
    baseline = results["stock"]["seconds"]
    print(
        f"\n{'variant':<58} {'sent/s':>7} {'x (1)':>6} {'peak RSS MB':>11} {'padded/real':>11} {'GFLOP/s':>8} "
        f"{'% of matmul':>11} {'cold start s':>12}"
    )
    for variant, result in results.items():
        seconds = result["seconds"]
        achieved = useful_flops / seconds / 1e9
        precision = variant.rsplit("-", 1)[-1] if "-" in variant else "fp32"
        print(
            f"{VARIANTS[variant]:<58} {len(lengths) / seconds:>7.1f} {baseline / seconds:>6.2f} "
            f"{result['peak_rss_mb']:>11.0f} {result['padded'] / sum(lengths):>11.2f} {achieved:>8.1f} "
            f"{100 * achieved / rates[precision]:>10.0f}% {f'{cold[variant]:.2f}' if variant in cold else '-':>12}"
        )
    print(
        "sent/s: best of 2 passes (and of the rounds), loading excluded; peak RSS: the variant's own process; "
        "padded/real: tokens computed per real token;\nGFLOP/s: useful encoder FLOPs (real tokens only) per second; "
        "% of matmul: of the rate above in the variant's precision (int8: torch's dynamically quantized Linear); cold "
        "start: launch of kosenttype-predict to its first output record, best of the runs."
    )


def print_goals(results: dict[str, dict], cold: dict[str, float]) -> None:
    baseline = results["stock"]["seconds"]
    ours_in_pipeline = baseline / results["pipeline"]["seconds"]
    best = min((v for v in results if "-" in v), key=lambda v: results[v]["seconds"])
    best_ratio = baseline / results[best]["seconds"]
    print(
        f"\ngoals: (2)/(1) = {ours_in_pipeline:.2f} (>= 0.95: {'met' if ours_in_pipeline >= 0.95 else 'NOT met'}); "
        f"best engine variant ({best}) = {best_ratio:.2f}x (1) (>= 3: {'met' if best_ratio >= 3 else 'NOT met'})"
    )
    if "torch-int8" in results and "onnxruntime-int8" in cold:
        ratio = results["torch-int8"]["seconds"] / results["onnxruntime-int8"]["seconds"]
        onnx_cold = cold["onnxruntime-int8"]
        fastest_torch = min(seconds for variant, seconds in cold.items() if variant.startswith("torch"))
        print(
            f"targets: onnxruntime int8 = {ratio:.2f}x torch int8 in sentences/s "
            f"(>= 1: {'met' if ratio >= 1 else 'NOT met'}); onnxruntime int8 cold start {onnx_cold:.2f} s "
            f"(<= {COLD_START_TARGET_S}: {'met' if onnx_cold <= COLD_START_TARGET_S else 'NOT met'}), "
            f"{fastest_torch / onnx_cold:.1f}x faster than torch's fastest"
        )


def print_agreement(results: list[dict], source: str, count: int) -> None:
    print(f"\nagreement with torch fp32 on {source}, over {count} held-out dacon sentences ", end="")
    print(f"(bar: same label >= {SAME_LABEL_BAR:.1%}, max probability difference <= {MAX_PROBABILITY_DIFFERENCE_BAR}):")
    for result in results:
        details = f"accuracy {result['accuracy']:.3f}, predicted labels {result['spread']}"
        if "same_label" not in result:
            print(f"  {result['variant']:<17} {details}")
            continue
        print(
            f"  {result['variant']:<17} same label {result['same_label']:.2%}, max diff {result['max_diff']:.4f} -> "
            f"{'PASS' if result['passed'] else 'FAIL'} ({details})"
        )


def export(model_dir: Path) -> float:
    """`kosenttype-export-onnx`'s library call into the folder's own onnx/ (fp32 and int8); seconds it took."""
    from kosenttype.onnx_export import export_onnx

    started = time.perf_counter()
    (model_dir / "onnx").mkdir()
    export_onnx(model_dir, model_dir / "onnx", report=lambda line: print(f"  {line}"))
    return time.perf_counter() - started


def run_speed(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    from kosenttype.engine import EngineSettings, load_classifier

    layers = 2 if arguments.quick else 12
    stock_dir, ours_dir = build_speed_models(folder, [text for text, _ in fit_rows], layers)
    if "onnxruntime" in arguments.backends:
        print(f"exporting the {layers}-layer model:")
        print(f"  exported in {export(ours_dir):.0f} s")
    sentences = [text for text, _ in measure_rows[: arguments.sentences]]
    settings = EngineSettings(arguments.batch_size, MAX_LENGTH, max_batch_tokens=arguments.max_batch_tokens)
    payload_path = folder / "payload.json"
    payload = {
        "model_dirs": {"stock": str(stock_dir), "ours": str(ours_dir)},
        "sentences": sentences,
        "threads": arguments.threads,
        "settings": {"batch_size": arguments.batch_size, "max_batch_tokens": arguments.max_batch_tokens},
    }
    payload_path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    lengths = [len(ids) for ids in load_classifier(ours_dir, device="cpu").token_ids(sentences, MAX_LENGTH)]
    print(
        f"{len(sentences)} dacon sentences, {sum(lengths) / len(lengths):.1f} tokens on average (max {max(lengths)}); "
        f"{layers} layers; {arguments.threads} threads; engine batch_size {settings.batch_size}, "
        f"max_batch_tokens {settings.max_batch_tokens or 'none'}",
        flush=True,
    )
    rates = matmul_rates()
    variants = ["stock", "pipeline", *engine_variants(arguments.backends)]
    results: dict[str, dict] = {}
    for _ in range(arguments.repeats):  # interleaved rounds, best of each: the least disturbed run counts
        for variant in variants:
            argv = [sys.executable, __file__, "--worker", variant, "--worker-input", str(payload_path)]
            result = json_child(argv, f"variant {variant}", threads_env(arguments.threads), timeout=600)
            if variant not in results or result["seconds"] < results[variant]["seconds"]:
                results[variant] = result
    rates_after = matmul_rates()  # measured again: on a shared machine the better of the two is the hardware's
    rates = {name: max(rate, rates_after[name]) for name, rate in rates.items()}
    for variant, result in results.items():
        result["padded"] = sum(count * length for count, length in batch_shapes(variant, lengths, settings))
    input_path = folder / "cold_start.txt"
    input_path.write_text("\n".join(sentences[:8]) + "\n", encoding="utf-8")
    cold = {
        variant: min(cold_start_seconds(ours_dir, variant, input_path, arguments.threads) for _ in range(runs))
        for variant in variants[2:]
        if (runs := arguments.cold_runs)
    }
    print("\nmatmul (2048x768 @ 768x3072), best of before and after, GFLOP/s: ", end="")
    print(", ".join(f"{name} {rate:.0f}" for name, rate in rates.items()))
    print_speed(results, cold, lengths, layers, rates)
    print_goals(results, cold)


def run_agreement(folder: Path, arguments: argparse.Namespace, fit_rows: list, measure_rows: list) -> None:
    rows = measure_rows[: arguments.agreement_sentences]
    onnx = "onnxruntime" in arguments.backends
    if arguments.agreement_model:
        model_dir, source = arguments.agreement_model, str(arguments.agreement_model)
        if onnx and not (model_dir / "onnx").is_dir():
            raise SystemExit(f"{model_dir} has no onnx/ folder: run kosenttype-export-onnx --model {model_dir} first")
    else:
        layers, started = (2 if arguments.quick else 4), time.perf_counter()
        model_dir = train_agreement_model(folder / "agreement", fit_rows, arguments.agreement_train_steps, layers)
        if onnx:
            print("\nexporting the agreement model:")
            export(model_dir)
        source = (
            f"a small classifier trained here (hidden 256, {layers} layers, {arguments.agreement_train_steps} steps, "
            f"{time.perf_counter() - started:.0f} s{' with its export' if onnx else ''})"
        )
    variants = engine_variants(arguments.backends)
    results = agreement(model_dir, [text for text, _ in rows], [label for _, label in rows], variants)
    print_agreement(results, source, len(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="torch", help="Engine backends to measure, comma-separated: torch, onnxruntime."
    )
    parser.add_argument("--sentences", type=int, default=512, help="Sentences timed per variant.")
    parser.add_argument("--threads", type=int, default=2, help="Threads per variant (torch and onnxruntime).")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="The engine's batch size.")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=CPU_BATCH_TOKENS, help="The engine's token budget (0: none)."
    )
    parser.add_argument("--repeats", type=int, default=1, help="Interleaved rounds per variant; the best counts.")
    parser.add_argument("--cold-runs", type=int, default=2, help="kosenttype-predict launches per variant (0: none).")
    parser.add_argument("--quick", action="store_true", help="64 sentences, 2 layers, a short agreement run.")
    parser.add_argument("--agreement-model", type=Path, help="A trained classifier folder (exported, for onnxruntime).")
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
    arguments.backends = arguments.backends.split(",")
    if unknown := set(arguments.backends) - {"torch", "onnxruntime"}:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))} (expected torch, onnxruntime)")
    if not DACON_CSV.is_file():
        print(f"skipped: {DACON_CSV} is absent (the benchmark needs real Korean sentences)")
        return 0
    if arguments.quick:
        arguments.sentences, arguments.agreement_train_steps = 64, 100
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()  # "Writing model shards"/"Loading weights" bars would drown the table
    print(machine_line(arguments.threads, arguments.backends))
    fit_rows, measure_rows = load_dacon(DACON_CSV)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        if not arguments.skip_speed:
            run_speed(Path(folder), arguments, fit_rows, measure_rows)
        if not arguments.skip_agreement:
            run_agreement(Path(folder), arguments, fit_rows, measure_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
