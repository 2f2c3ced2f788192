"""kosenttype-serve under many concurrent clients, against offline kosenttype-predict, at the real backbone's size.

    python benchmarks/bench_serve.py [--sentences 512] [--precision auto] [--threads N] [--repeats 2]

The model has the real backbone's shape (RoBERTa, 12 layers, hidden 768, vocabulary 32,000) with random weights and
a WordPiece tokenizer trained on one half of ../shared/data/dacon/train.csv; the timed sentences are the other half
(read-only; without the file, the package's own data/sample_sentences.jsonl is used for both). Measured in one run:

  (1) offline `kosenttype-predict` on the sentences at the same precision and threads: the sentences/s it reports
      itself (model loading excluded);
  (2) `kosenttype-serve` with its default batching, clients on loopback each sending one sentence per request
      (POST /, the Inference API route) in a closed loop: sentences/s, p50/p99 latency, mean sentences per forward
      pass (from /metrics), and requests sent = requests answered with 200, at 1, 4, 16 and 64 clients;
  (3) the same server with batching off (`--max_batch_size 1`: one sentence per forward pass, the naive server),
      at 64 clients.

(1), (2) at 64 clients and (3) run interleaved, `--repeats` rounds, and each keeps its best round: on a shared
machine the fastest round is the least disturbed. Both servers stay up the whole run (an idle one uses no CPU).
Client, server and model share the machine, so the clients' own CPU time is part of what the server's figure pays.
Each phase stops sending after `--phase_seconds` and waits for what it sent; every server is stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from bench_common import DACON_CSV, backbone_shaped_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SENTENCES = REPO / "data" / "sample_sentences.jsonl"
CONCURRENCY = (1, 4, 16, 64)
PHASE_SECONDS = 30  # a phase stops sending after this long, so that a slow machine still finishes in minutes
PHASE_TIMEOUT_S = 240
STARTUP_TIMEOUT_S = 300


def load_sentences(count: int, seed: int = 0) -> tuple[list[str], list[str], str]:
    """(sentences to fit the tokenizer on, sentences to time, where they came from)."""
    if DACON_CSV.is_file():
        with DACON_CSV.open(encoding="utf-8", newline="") as stream:
            rows = [row["문장"] for row in csv.DictReader(stream)]
        random.Random(seed).shuffle(rows)
        half = len(rows) // 2
        return rows[:half], rows[half : half + count], f"{DACON_CSV.name} (held-out half)"
    rows = [json.loads(line)["sentence"] for line in SAMPLE_SENTENCES.read_text(encoding="utf-8").splitlines()]
    random.Random(seed).shuffle(rows)
    return rows, (rows * (count // len(rows) + 1))[:count], f"{SAMPLE_SENTENCES.name} (repeated)"


def child_env() -> dict[str, str]:
    """Children inherit OMP_NUM_THREADS (set by --threads): predict and the server then use the same threads."""
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


# Offline predict's engine call: `Classifier.classify` with kosenttype-predict's defaults (chunks of 1,024 sentences
# sorted by length, batches of 64 within the device's token budget), after a warm-up, in a child process.
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


def offline_rates(model_dir: Path, input_file: Path, precision: str) -> dict:
    """Offline predict's sentences per second of wall time ("rate") and of CPU time ("cpu_rate")."""
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHILD, str(model_dir), str(input_file), precision],
        capture_output=True,
        text=True,
        timeout=PHASE_TIMEOUT_S + STARTUP_TIMEOUT_S,
        env=child_env(),
    )
    if completed.returncode != 0:
        raise SystemExit(f"offline predict failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.log.read_text(errors="replace").strip().splitlines()[-1]


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer: a load generator as light as `wrk`'s,
    so that the clients' own CPU time (httpx spends 2-5 ms per request) takes as little as possible from the server
    they share the machine with. Answers are checked (status 200, one list per input) and counted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        parsed = urlsplit(url)
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        return cls(reader, writer, parsed.netloc)

    async def post(self, body: dict) -> tuple[int, object]:
        payload = json.dumps(body, ensure_ascii=False).encode()
        head = f"POST / HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await self.writer.drain()
        response_head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response_head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", response_head).group(1))
        return status, json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def closed_loop(url: str, sentences: list[str], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients, each on its own connection, sending its next sentence as soon as its previous answer
    arrives, until the sentences run out or `seconds` have passed (requests already sent are waited for)."""
    pending = list(reversed(sentences))
    latencies: list[float] = []
    sent = failures = 0
    started = time.perf_counter()

    async def client_loop() -> None:
        nonlocal sent, failures
        connection = await Connection.open(url)
        try:
            while pending and time.perf_counter() - started < seconds:
                sentence = pending.pop()
                sent += 1
                request_started = time.perf_counter()
                status, answer = await connection.post({"inputs": sentence})
                if status == 200 and isinstance(answer, list) and len(answer) == 1:
                    latencies.append(time.perf_counter() - request_started)
                else:
                    failures += 1
        finally:
            await connection.close()

    await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(concurrency))), PHASE_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "sent": sent,
        "answered": len(latencies),
        "failed": failures,
        "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def warm_up(server: Server, sentences: list[str]) -> None:
    """Unmeasured requests first: the first forward passes pay for kernel selection and allocation."""
    asyncio.run(closed_loop(server.url, sentences[:32], 8, PHASE_SECONDS))


def run_phase(server: Server, sentences: list[str], concurrency: int, seconds: float) -> dict:
    before = httpx.get(f"{server.url}/metrics", timeout=10).text
    server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
    result = asyncio.run(closed_loop(server.url, sentences, concurrency, seconds))
    server_cpu, client_cpu = cpu_seconds(server.process.pid) - server_cpu, time.process_time() - client_cpu
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
            for server in servers.values():
                warm_up(server, sentences)
            sweep = [
                run_phase(servers["batched"], sentences[: 32 * clients], clients, arguments.phase_seconds)
                for clients in CONCURRENCY[:-1]
            ]
            rounds: dict[str, list] = {"offline": [], "batched": [], "naive": []}
            for round_number in range(arguments.repeats):
                rounds["offline"].append(offline_rates(model_dir, input_file, arguments.precision))
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
    every_answered = all(result["sent"] == result["answered"] for _, result in results) and all(
        result["sent"] == result["answered"] for name in ("batched", "naive") for result in rounds[name]
    )
    print(
        f"\nbatched server at 64 clients: {batched['rate'] / offline['rate']:.0%} of offline predict's sentences/s "
        f"and {batched['cpu_rate'] / offline['cpu_rate']:.0%} of its sentences per CPU-s (target >= 80%); "
        f"{batched['rate'] / naive['rate']:.1f}x the server without batching; every request sent was answered: "
        f"{every_answered}; {time.monotonic() - started:.0f} s in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
