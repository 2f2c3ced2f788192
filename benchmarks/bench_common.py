"""What the benchmarks share: the real data read in place, the backbone-shaped model, child processes and memory.

torch and transformers are imported inside the functions, so an onnxruntime worker importing this module measures
onnxruntime's memory, not torch's.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DACON_CSV = SHARED_DATA / "dacon" / "train.csv"
SENTENCE_TYPES = ("사실형", "추론형", "예측형", "대화형")
MAX_LENGTH = 256


def child_env(**variables: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **variables}


def json_child(argv: list[str], what: str, env: dict[str, str] | None = None, timeout: float | None = None) -> dict:
    """Run a measuring child process and return the JSON object on its last stdout line."""
    completed = subprocess.run(argv, capture_output=True, text=True, env=env or child_env(), timeout=timeout)
    if completed.returncode != 0:
        raise SystemExit(f"{what} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory (VmHWM; 0 once it is gone). Not getrusage's ru_maxrss: Linux carries that
    over from the parent through fork and exec, so every child would report at least the parent's peak."""
    try:
        match = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0.0
    return int(match.group(1)) / 1024 if match else 0.0  # an exiting process has no memory fields left


class PeakMemory:
    """The highest peak RSS (MB) of any one process that `pids()` names while the block runs, polled in a thread."""

    def __init__(self, pids: Callable[[], Iterable[int]], interval: float = 0.02) -> None:
        self.pids, self.interval, self.peak = pids, interval, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        import psutil

        while not self.stop.wait(self.interval):
            with contextlib.suppress(psutil.Error):  # a process ended while being listed
                self.peak = max([self.peak, *(peak_rss_mb(pid) for pid in self.pids())])

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()


def load_dacon(path: Path = DACON_CSV, seed: int = 0) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Shuffled (sentence, label id) pairs split in two halves: one to fit tokenizers/models, one to measure on."""
    label_ids = {label: index for index, label in enumerate(SENTENCE_TYPES)}
    with path.open(encoding="utf-8", newline="") as stream:
        rows = [(row["문장"], label_ids[row["유형"]]) for row in csv.DictReader(stream)]
    random.Random(seed).shuffle(rows)
    half = len(rows) // 2
    return rows[:half], rows[half:]


def backbone_shaped_model(folder: Path, fit_sentences: list[str], layers: int, tokenizer=None) -> Path:
    """Our classifier at the real backbone's shape (random weights: speed doesn't depend on them), with a
    32,000-token WordPiece vocabulary fitted on `fit_sentences` unless a tokenizer is given."""
    import torch

    from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
    from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
    from kosenttype.hub_tokenizer import save_tokenizer_for_hub
    from kosenttype.scratch_models import train_wordpiece_tokenizer

    tokenizer = tokenizer or train_wordpiece_tokenizer(fit_sentences, vocab_size=KO_SROBERTA_ENCODER["vocab_size"])
    encoder = {**KO_SROBERTA_ENCODER, "num_hidden_layers": layers}
    torch.manual_seed(0)
    model = KoSentTypeForSequenceClassification(KoSentTypeConfig(encoder_config=encoder, backbone_name=None))
    model.eval().save_pretrained(folder)
    save_tokenizer_for_hub(tokenizer, folder, max_length=MAX_LENGTH)
    return folder
