"""Proof that a saved model folder predicts what the model in memory predicts, loaded as users will: in a fresh
process, through `AutoTokenizer` + `AutoModelForSequenceClassification` with `trust_remote_code=True`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from .errors import KoSentTypeError

MAX_ABS_LOGIT_DIFF = 1e-5
# Sentences written for this check: ordinary, empty, emoji, mixed scripts, and one past the length limit.
VERIFICATION_SENTENCES = [
    "시청 앞 광장에서 어제 저녁 불꽃 축제가 열렸다.",
    "판매 부진이 이어진 것은 가격 정책 탓으로 보인다.",
    "다음 분기에는 신규 공장이 가동될 예정이다.",
    "점심 같이 드실래요?",
    "",
    "드디어 합격했어요 🎉🎉",
    "새 GPU 서버는 CUDA 12 환경에서 benchmark를 통과했다.",
    " ".join(["연구진은 이번 실험 결과가 기존 이론과 다르다고 설명했다."] * 60),
]
VERIFY_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder = sys.argv[1]
sentences = json.loads(sys.stdin.read())
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
print(json.dumps({"logits": logits.tolist(), "model_class": f"{type(model).__module__}.{type(model).__name__}",
                  "id2label": {str(k): v for k, v in model.config.id2label.items()}}))
"""


def verify_saved_folder(
    folder: Path, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int, labels: list[str]
) -> float:
    """The largest logit difference on VERIFICATION_SENTENCES between `model` and `folder` reloaded in a process
    that shares nothing with this one (offline, another working directory); more than MAX_ABS_LOGIT_DIFF, other
    labels, or a folder that does not load is a KoSentTypeError."""
    with torch.inference_mode():  # one sentence at a time, so activations stay small; the fresh process batches
        expected = [
            model(**tokenizer(sentence, truncation=True, max_length=max_length, return_tensors="pt")).logits[0]
            for sentence in VERIFICATION_SENTENCES
        ]
    completed = subprocess.run(
        [sys.executable, "-c", VERIFY_SCRIPT, str(folder.resolve())],
        input=json.dumps(VERIFICATION_SENTENCES),
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise KoSentTypeError(f"verification failed: the saved folder does not load in a fresh process ({last_line})")
    reloaded = json.loads(completed.stdout.strip().splitlines()[-1])
    if reloaded["id2label"] != {str(index): label for index, label in enumerate(labels)}:
        raise KoSentTypeError(f"verification failed: reloaded labels {reloaded['id2label']} differ from {labels}")
    difference = (torch.tensor(reloaded["logits"]) - torch.stack(expected).float()).abs().max().item()
    if not math.isfinite(difference) or difference > MAX_ABS_LOGIT_DIFF:
        raise KoSentTypeError(f"verification failed: max abs logit difference {difference:.3g} > {MAX_ABS_LOGIT_DIFF}")
    return difference
