"""kosenttype-serve under many concurrent clients against offline kosenttype-predict, at the real backbone's size:
sentences/s, latency and sentences per forward pass at 1-64 clients, with batching and without. Set-up and how the
rounds are taken: docs/benchmarks.md.

    python benchmarks/bench_serve.py [--sentences 512] [--precision auto] [--threads N] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
from bench_common import DACON_CSV, backbone_shaped_model, child_env, json_child, load_dacon

SAMPLE_SENTENCES = Path(__file__).resolve().parents[1] / "data" / "sample_sentences.jsonl"
CONCURRENCY = (1, 4, 16, 64)
PHASE_SECONDS = 30  # a phase stops sending after this long, so that a slow machine still finishes in minutes
PHASE_TIMEOUT_S = 240
STARTUP_TIMEOUT_S = 300


def load_sentences(count: int) -> tuple[list[str], list[str], str]:
    """(sentences to fit the tokenizer on, sentences to time, where they came from)."""
    if DACON_CSV.is_file():
        fit, measure = load_dacon(DACON_CSV)
        return [text for text, _ in fit], [text for text, _ in measure[:count]], f"{DACON_CSV.name} (held-out half)"
    rows = [json.loads(line)["sentence"] for line in SAMPLE_SENTENCES.read_text(encoding="utf-8").splitlines()]
    random.Random(0).shuffle(rows)
    return rows, (rows * (count // len(rows) + 1))[:count], f"{SAMPLE_SENTENCES.name} (repeated)"


# Offline predict's engine call (`Classifier.classify` with kosenttype-predict's defaults, after a warm-up): its
# sentences per second of wall time ("rate") and of CPU time ("cpu_rate").
# Children inherit OMP_NUM_THREADS (set by --threads): predict and the server then use the same threads.
OFFLINE_CHILD = """
import json, sys, time
from kosenttype.engine import load_classifier
model, input_file, precision = sys.argv[1:4]
sentences = open(input_file, encoding="utf-8").read().splitlines()
classifier = load_classifier(model, precision=precision)
list(classifier.classify(sentences[:32]))
wall, cpu = time.perf_counter(), time.process_time()
count = sum(1 for prediction in classifier.classify(sentences) if prediction.error is None)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"rate": count / wall, "cpu_rate": count / cpu}))
"""


class Server:
    """kosenttype-serve on a free loopback port, ready when /health says 200; stopped with SIGTERM."""

    def __init__(self, model_dir: Path, log: Path, *options: str) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kosenttype.serve", "--model", str(model_dir), "--port", "0", *options],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=child_env(),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self.url = None
        while time.monotonic() < deadline and self.process.poll() is None:
            text = log.read_text(errors="replace")
            if self.url is None and (match := re.search(r"listening on (http://\S+);", text)):
                self.url = match.group(1)
            if self.url is not None:
                try:
                    if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"kosenttype-serve did not become ready: {log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.log.read_text(errors="replace").strip().splitlines()[-1]


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: dict) -> tuple[int, object]:
    """POST JSON on a keep-alive HTTP/1.1 connection: a load generator as light as `wrk`'s, so that the clients' own
    CPU time (httpx spends 2-5 ms per request) takes as little as possible from the server sharing the machine."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    response_head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", response_head).group(1))
    return int(response_head.split(b" ", 2)[1]), json.loads(await reader.readexactly(length))


async def closed_loop(url: str, sentences: list[str], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients, each on its own connection, sending its next sentence as soon as its previous answer
    arrives, until the sentences run out or `seconds` have passed (requests already sent are waited for). Answers
    are checked (status 200, one list per input) and counted."""
    pending = list(reversed(sentences))
    latencies: list[float] = []
    sent = 0
    started = time.perf_counter()
    address = urlsplit(url)

    async def client_loop() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            while pending and time.perf_counter() - started < seconds:
                sentence = pending.pop()
                sent += 1
                request_started = time.perf_counter()
                status, answer = await post(reader, writer, address.netloc, {"inputs": sentence})
                if status == 200 and isinstance(answer, list) and len(answer) == 1:
                    latencies.append(time.perf_counter() - request_started)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(concurrency))), PHASE_TIMEOUT_S)
    return {
        "concurrency": concurrency,
        "sent": sent,
        "answered": len(latencies),
        "rate": len(latencies) / (time.perf_counter() - started),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def run_phase(server: Server, sentences: list[str], concurrency: int, seconds: float) -> dict:
    before = httpx.get(f"{server.url}/metrics", timeout=10).text
    process = psutil.Process(server.process.pid)  # user + system CPU time, all its threads
    server_cpu, client_cpu = sum(process.cpu_times()[:2]), time.process_time()
    result = asyncio.run(closed_loop(server.url, sentences, concurrency, seconds))
    server_cpu, client_cpu = sum(process.cpu_times()[:2]) - server_cpu, time.process_time() - client_cpu
    after = httpx.get(f"{server.url}/metrics", timeout=10).text

    def number(text: str, name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))

    calls = number(after, "kosenttype_batch_size_count") - number(before, "kosenttype_batch_size_count")
    run = number(after, "kosenttype_batch_size_sum") - number(before, "kosenttype_batch_size_sum")
    result["mean_batch"] = run / calls if calls else 0.0
    result["cpu_rate"] = result["answered"] / server_cpu
    result["client_cpu_ms"] = 1000 * client_cpu / max(result["sent"], 1)
    return result


TABLE_HEADER = (
    "| server | clients | sentences/s | × offline | sentences per server CPU-s | × offline | sentences per forward "
    "| p50 ms | p99 ms | client CPU ms per request | sent / answered |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def print_row(name: str, result: dict, offline: dict) -> None:
    print(
        f"| {name} | {result['concurrency']} | {result['rate']:.1f} | {result['rate'] / offline['rate']:.0%} | "
        f"{result['cpu_rate']:.1f} | {result['cpu_rate'] / offline['cpu_rate']:.0%} | {result['mean_batch']:.1f} | "
        f"{result['p50_ms']:.0f} | {result['p99_ms']:.0f} | {result['client_cpu_ms']:.1f} | "
        f"{result['sent']} / {result['answered']} |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512, help="Sentences (= requests) per phase, at most.")
    parser.add_argument("--precision", default="auto", help="For predict and the server alike (default: auto).")
    parser.add_argument("--layers", type=int, default=12, help="Encoder layers (12 = the real backbone).")
    parser.add_argument("--max_wait_ms", default="5", help="The batched server's --max_wait_ms.")
    parser.add_argument("--phase_seconds", type=float, default=PHASE_SECONDS, help="Stop sending after this long.")
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved rounds; each variant keeps its best.")
    parser.add_argument(
        "--threads",
        type=int,
        help="Math threads for predict and the server alike (OMP_NUM_THREADS); 1 is steadier on a busy machine.",
    )
    arguments = parser.parse_args(argv)
    if arguments.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(arguments.threads)
    started = time.monotonic()
    fit, sentences, source = load_sentences(arguments.sentences)
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as temporary:
        folder = Path(temporary)
        model_dir = backbone_shaped_model(folder / "model", fit, arguments.layers)
        input_file = folder / "sentences.txt"
        input_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        threads = os.environ.get("OMP_NUM_THREADS", "default")
        print(
            f"model: RoBERTa {arguments.layers} layers, hidden 768, vocab 32000 (random weights); {len(sentences)} "
            f"sentences from {source}; {os.cpu_count()} CPUs, threads {threads}; precision {arguments.precision}",
            flush=True,
        )
        common = ("--precision", arguments.precision, "--max_queue", str(max(1024, len(sentences))))
        servers = {
            "batched": Server(model_dir, folder / "batched.log", *common, "--max_wait_ms", arguments.max_wait_ms),
            "naive": Server(model_dir, folder / "naive.log", *common, "--max_batch_size", "1"),
        }
        try:
            for server in servers.values():  # unmeasured: the first forward passes pay for kernels and allocation
                asyncio.run(closed_loop(server.url, sentences[:32], 8, PHASE_SECONDS))
            sweep = [
                run_phase(servers["batched"], sentences[: 32 * clients], clients, arguments.phase_seconds)
                for clients in CONCURRENCY[:-1]
            ]
            rounds: dict[str, list] = {"offline": [], "batched": [], "naive": []}
            for round_number in range(arguments.repeats):
                offline = [sys.executable, "-c", OFFLINE_CHILD, str(model_dir), str(input_file), arguments.precision]
                rounds["offline"].append(
                    json_child(offline, "offline predict", timeout=PHASE_TIMEOUT_S + STARTUP_TIMEOUT_S)
                )
                for name, server in servers.items():
                    rounds[name].append(run_phase(server, sentences, CONCURRENCY[-1], arguments.phase_seconds))
                print(
                    f"round {round_number + 1}: offline {rounds['offline'][-1]['rate']:.1f}, batched "
                    f"{rounds['batched'][-1]['rate']:.1f}, naive {rounds['naive'][-1]['rate']:.1f} sentences/s",
                    flush=True,
                )
        finally:
            for name, server in servers.items():
                print(f"{name} server: {server.stop()}", flush=True)

    offline, batched, naive = (
        max(rounds[name], key=lambda result: result["rate"]) for name in ("offline", "batched", "naive")
    )
    results = [*(("batched (default)", result) for result in sweep), ("batched (default)", batched)]
    results.append(("batching off (--max_batch_size 1)", naive))
    print(
        f"\noffline predict: {offline['rate']:.1f} sentences/s, {offline['cpu_rate']:.1f} sentences per CPU-s "
        f"(its fastest of {arguments.repeats} rounds; the servers' rows below too)\n\n{TABLE_HEADER}"
    )
    for name, result in results:
        print_row(name, result, offline)
    every_answered = all(result["sent"] == result["answered"] for result in sweep + rounds["batched"] + rounds["naive"])
    print(
        f"\nbatched server at 64 clients: {batched['rate'] / offline['rate']:.0%} of offline predict's sentences/s "
        f"and {batched['cpu_rate'] / offline['cpu_rate']:.0%} of its sentences per CPU-s (target >= 80%); "
        f"{batched['rate'] / naive['rate']:.1f}x the server without batching; every request sent was answered: "
        f"{every_answered}; {time.monotonic() - started:.0f} s in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
