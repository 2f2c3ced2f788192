"""Time and peak memory of converting a base-size checkpoint (12 layers, hidden 768, vocabulary 32000: ~440 MB),
with a process that only imports the converter and a naive `torch.load` + `save_file` as baselines in the same run.
Goal: converter peak RSS < 2x the checkpoint's size. How it measures: docs/benchmarks.md.

    python benchmarks/bench_convert.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from bench_common import PeakMemory, child_env
from torch import nn
from transformers import AutoTokenizer, RobertaConfig, RobertaModel

from kosenttype.configuration_kosenttype import KO_SROBERTA_ENCODER
from kosenttype.scratch_models import train_wordpiece_tokenizer

# Written for this benchmark: enough text for a small tokenizer.
TOKENIZER_SENTENCES = [
    "오늘 회의는 오후 세 시에 시작한다.",
    "새 정책의 효과는 내년에야 드러날 것으로 보인다.",
    "주말에는 비가 올 가능성이 높다.",
    "이 문제는 어떻게 풀면 좋을까요?",
]
# Each child reports its own high-water mark with bench_common.peak_rss_mb.
CHILD_PRELUDE = "import json, sys, time\nstart = time.perf_counter()\n"
CHILD_RESULT = (
    "from bench_common import peak_rss_mb\n"
    "print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - start, 'peak_mb': peak_rss_mb()}))"
)
CONVERT_CHILD = (
    CHILD_PRELUDE + "from kosenttype.convert_checkpoint import main\nrc = main(sys.argv[1:])\n" + CHILD_RESULT
)
IMPORT_ONLY_CHILD = CHILD_PRELUDE + "import kosenttype.convert_checkpoint\nrc = 0\n" + CHILD_RESULT
NAIVE_CHILD = (
    CHILD_PRELUDE
    + "import torch, kosenttype.convert_checkpoint\nfrom safetensors.torch import save_file\n"
    + "state = torch.load(sys.argv[1], weights_only=False)['model_state_dict']\n"
    + "save_file({k: v.contiguous() for k, v in state.items()}, sys.argv[2])\nrc = 0\n"
    + CHILD_RESULT
)


def save_base_size_tokenizer(folder: Path) -> None:
    """A tokenizer with the backbone's 32000 entries (the converter refuses an embedding far larger than its
    tokenizer): a small trained vocabulary padded with unreachable `[unusedN]` entries, as BERT vocabularies are."""
    trained = train_wordpiece_tokenizer(TOKENIZER_SENTENCES * 4, vocab_size=400)
    vocabulary = [token for token, _ in sorted(trained.get_vocab().items(), key=lambda item: item[1])]
    vocabulary += [f"[unused{index}]" for index in range(KO_SROBERTA_ENCODER["vocab_size"] - len(vocabulary))]
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
    settings = {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)


def build_run_folder(folder: Path, num_layers: int) -> Path:
    save_base_size_tokenizer(folder / "tokenizer")
    config = RobertaConfig(**{**KO_SROBERTA_ENCODER, "num_hidden_layers": num_layers})
    # the private training module's shape: encoder with pooler, dropout, linear head
    module = nn.ModuleDict(
        {"encoder": RobertaModel(config), "dropout": nn.Dropout(0.1), "classifier": nn.Linear(config.hidden_size, 4)}
    )
    checkpoint = folder / "best.pt"
    torch.save({"model_state_dict": module.state_dict(), "epoch": 5, "best_macro_f1": 0.8153}, checkpoint)
    export_config = {"backbone": "jhgan/ko-sroberta-multitask", "max_length": 256, "pooling": "mean"}
    (folder / "hf_export_config.json").write_text(json.dumps(export_config), encoding="utf-8")
    return checkpoint


def run_child(code: str, args: list[str]) -> dict:
    """Run a measured child; poll its descendants' high-water marks (the verification process) while it runs."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(PYTHONPATH=str(Path(__file__).parent)),
    )
    with PeakMemory(lambda: [process.pid for process in psutil.Process(child.pid).children(recursive=True)]) as memory:
        stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"child failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "descendants_mb": memory.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 encoder layers instead of 12")
    options = parser.parse_args()
    num_layers = 2 if options.quick else 12
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as workdir:
        work = Path(workdir)
        started = time.perf_counter()
        checkpoint = build_run_folder(work, num_layers)
        size_mb = checkpoint.stat().st_size / 2**20
        print(f"built a {num_layers}-layer checkpoint of {size_mb:.0f} MB in {time.perf_counter() - started:.1f} s")
        imports = run_child(IMPORT_ONLY_CHILD, [])
        naive = run_child(NAIVE_CHILD, [str(checkpoint), str(work / "naive.safetensors")])
        converted = run_child(CONVERT_CHILD, ["--checkpoint", str(checkpoint), "--output-dir", str(work / "out")])
        if converted["rc"] != 0:
            raise SystemExit("conversion failed")
    rows = [
        ("imports only (baseline)", imports["wall_s"], imports["peak_mb"]),
        ("naive: torch.load + save_file", naive["wall_s"], naive["peak_mb"]),
        ("convert_checkpoint (converter)", converted["wall_s"], converted["peak_mb"]),
        ("  its verification process", None, converted["descendants_mb"]),
    ]
    print(f"\n{'process':<34}{'wall s':>8}{'peak RSS MB':>13}{'/ checkpoint':>14}")
    for name, wall, rss in rows:
        wall_text = f"{wall:8.1f}" if wall is not None else f"{'(incl.)':>8}"
        print(f"{name:<34}{wall_text}{rss:13.0f}{rss / size_mb:13.2f}x")
    ratio = converted["peak_mb"] / size_mb
    print(f"\ncheckpoint {size_mb:.0f} MB; converter peak RSS {ratio:.2f}x its size (goal < 2x): ", end="")
    print("OK" if ratio < 2 else "OVER")


if __name__ == "__main__":
    main()
