"""The Ray engine against the local engine on this machine, at the real backbone's size: the rate once running, the
fixed cost of a job, a worker's memory, the single output file's ceiling, and the time a cluster of N such machines
needs for 100 million sentences. How each figure is taken: docs/benchmarks.md.

    python benchmarks/bench_ray.py [--sentences 800] [--layers 12]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_common import DACON_CSV, MAX_LENGTH, PeakMemory, backbone_shaped_model, child_env, load_dacon

from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
from kosenttype.records import InputRecord, Prediction
from kosenttype.writers import JsonLinesWriter

STARTUP_SENTENCES = 16
CORPUS = 100_000_000
CLUSTER_SIZES = (1, 10, 100, 1000)
CHUNK = 128
VARIANTS = {
    "local engine, 2 threads": ["--threads", "2"],
    "local engine, 1 thread": ["--threads", "1"],
    "Ray, 1 worker × 1 thread": ["--engine", "ray", "--num_workers", "1", "--threads_per_worker", "1"],
    "Ray, 2 workers × 1 thread": ["--engine", "ray", "--num_workers", "2", "--threads_per_worker", "1"],
}


def ray_workers() -> list[int]:
    """This run's Ray model workers: the descendants titled …BlockClassifier (not another job's)."""
    descendants = psutil.Process().children(recursive=True)
    return [process.pid for process in descendants if "BlockClassifier" in " ".join(process.cmdline())]


def run_command(model: Path, source: Path, output: Path, options: list[str]) -> tuple[float, str]:
    """(wall seconds, summary line) of one `kosenttype-predict` run in a fresh interpreter (exit status checked)."""
    argv = [sys.executable, "-m", "kosenttype.predict", "--model", str(model), "--input", str(source)]
    argv += ["--output", str(output), "--max_length", str(MAX_LENGTH), "--chunk_size", str(CHUNK), *options]
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, text=True, env=child_env())
    if completed.returncode != 0:
        raise SystemExit(f"bench_ray: {' '.join(options)} failed:\n{completed.stderr[-3000:]}")
    return time.perf_counter() - started, completed.stderr.strip().splitlines()[-1]


def running_rate(summary: str, sentences: int) -> float:
    """Sentences/s once running, from the summary line: after the model loaded (local engine), or after the first
    block came back (Ray engine; a block per worker, done by then, excluded)."""
    seconds = float(re.search(r" in ([\d.]+) s \(", summary).group(1))
    first = re.search(r"first result after ([\d.]+) s\) on Ray, (\d+) workers? ×", summary)
    if first is None:
        return sentences / seconds
    return (sentences - int(first.group(2)) * CHUNK) / (seconds - float(first.group(1)))


def measure(model: Path, folder: Path, sentences: list[str]) -> dict[str, dict[str, float]]:
    small, large = folder / "small.txt", folder / "large.txt"
    small.write_text("\n".join(sentences[:STARTUP_SENTENCES]) + "\n", encoding="utf-8")
    large.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    results = {}
    for name, options in VARIANTS.items():
        startup, _ = run_command(model, small, folder / "small.jsonl", options)
        with PeakMemory(ray_workers, interval=0.5) as memory:
            total, summary = run_command(model, large, folder / "large.jsonl", options)
        rate = running_rate(summary, len(sentences))
        results[name] = {"startup": startup, "total": total, "rate": rate, "worker_memory": memory.peak}
        print(f"  {name}: {STARTUP_SENTENCES} sentences {startup:.1f} s; {len(sentences)} sentences {total:.1f} s")
        print(f"    {summary}")
    return results


def single_output_ceiling(records: int = 50_000) -> float:
    """Records/s the driver can turn from Arrow blocks back into the local engine's JSON lines: one process
    writes a single output, so above this rate a cluster should write shards (an output folder) instead."""
    from kosenttype import ray_engine

    block = ray_engine.records_block(0, 1, [InputRecord(index, "문장") for index in range(records)])
    predictions = [Prediction(index, "사실형", 0.912345, [("사실형", 0.912345)]) for index in range(records)]
    encoded = ray_engine.predictions_block(block, predictions)
    writer = JsonLinesWriter(io.StringIO(), with_top_k=False)
    started = time.perf_counter()
    for _, prediction in ray_engine.block_predictions(encoded):
        writer.write(prediction)
    return records / (time.perf_counter() - started)


def report(results: dict[str, dict[str, float]], ceiling: float, sentences: int, layers: int) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n{sentences} sentences, {layers} layers, hidden 768, vocabulary 32000; {os.cpu_count()} CPUs here")
    print(f"load average now {load} (other work on this machine lowers every rate, multi-threaded ones most)")
    print(f"{'variant':<28} {'sentences/s':>12} {'job of 16 s':>12} {'vs local':>9} {'worker RSS':>11}")
    local_rate = results["local engine, 2 threads"]["rate"]
    for name, figures in results.items():
        memory = f"{figures['worker_memory']:.0f} MiB" if figures["worker_memory"] else "-"
        print(
            f"{name:<28} {figures['rate']:>12.1f} {figures['startup']:>12.1f} "
            f"{figures['rate'] / local_rate:>8.2f}× {memory:>11}"
        )
    per_worker = results["Ray, 1 worker × 1 thread"]["rate"]
    per_machine = results["Ray, 2 workers × 1 thread"]["rate"]
    startup = results["Ray, 2 workers × 1 thread"]["startup"]
    print(f"\nsingle output file: the driver writes at most {ceiling:,.0f} records/s (one process)")
    print(f"\n{CORPUS:,} sentences on N machines like this one (2 cores, 2 workers × 1 thread):")
    print(f"  time = {CORPUS:,} / (N × {per_machine:.1f} sentences/s) + {startup:.0f} s start-up")
    for machines in CLUSTER_SIZES:
        rate = machines * per_machine
        hours = (CORPUS / rate + startup) / 3600
        note = " (above the single-file ceiling: write shards)" if rate > ceiling else ""
        print(f"  N = {machines:>4}: {rate:>10,.0f} sentences/s, {hours:>8.1f} h = {hours / 24:>6.2f} days{note}")
    print(
        f"  per core, 1 worker × 1 thread: {per_worker:.1f} sentences/s, so a 16-core node with 16 workers gives up "
        f"to {16 * per_worker:.0f} sentences/s if its memory bandwidth keeps up"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=800, help="Sentences per timed run (default 800).")
    parser.add_argument("--layers", type=int, default=KO_SROBERTA_ENCODER["num_hidden_layers"])
    arguments = parser.parse_args(argv)
    if not DACON_CSV.is_file():
        print(f"bench_ray: {DACON_CSV} is absent; nothing to measure")
        return 0
    fit_rows, measure_rows = load_dacon(DACON_CSV)
    sentences = [text for text, _ in measure_rows[: arguments.sentences]]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        print(f"bench_ray: building a {arguments.layers}-layer model with a 32,000-token vocabulary …")
        model = backbone_shaped_model(folder / "model", [text for text, _ in fit_rows], arguments.layers)
        results = measure(model, folder, sentences)
    report(results, single_output_ceiling(), len(sentences), arguments.layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
