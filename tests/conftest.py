"""Fixtures shared by the tests: a tiny encoder and tokenizer built here, since nothing can be downloaded."""

from __future__ import annotations

import os

# Tiny models on 2 cores: one thread each is many times faster than torch's default (every small op would wait for
# the other thread), and subprocesses inherit it. Set before torch starts its thread pool.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from kosenttype import KoSentTypeConfig, KoSentTypeForSequenceClassification
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.scratch_models import tiny_encoder_config, train_wordpiece_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Sentences written for these tests (not taken from any dataset), one or more of each type.
KOREAN_SENTENCES = [
    "서울시는 어제 새 버스 노선 세 개를 개통했다.",
    "지난달 수출액은 전년 같은 달보다 4.2% 늘었다.",
    "회의에는 열두 개 회원국 대표가 참석했다.",
    "이 같은 흐름은 금리 인하 기대가 커진 결과로 풀이된다.",
    "전문가들은 공급 부족이 가격 상승의 주된 원인이라고 분석했다.",
    "그의 발언은 사실상 출마를 염두에 둔 것으로 보인다.",
    "내년 경제성장률은 2% 안팎에 머물 것으로 전망된다.",
    "정부는 다음 달부터 지원 대상을 넓힐 계획이다.",
    "기상청은 주말에 전국에 비가 올 것이라고 예보했다.",
    "혹시 내일 시간 괜찮으세요?",
    "정말 고마워요, 덕분에 살았어요!",
    '"이번에는 꼭 이기고 돌아오겠습니다."',
    "Apple과 삼성전자의 실적 발표가 이어졌다.",
    "오늘 날씨 진짜 좋다 😊",
]
TINY_MAX_LENGTH = 64


def tiny_config(**overrides) -> KoSentTypeConfig:
    """A classifier config around a 2-layer RoBERTa small enough to run anywhere in milliseconds."""
    encoder = tiny_encoder_config(
        vocab_size=overrides.pop("vocab_size", 300), hidden_size=32, max_length=TINY_MAX_LENGTH
    )
    return KoSentTypeConfig(encoder_config=encoder, backbone_name=None, **overrides)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_wordpiece_tokenizer(KOREAN_SENTENCES * 3, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), tiny_tokenizer)


def save_tiny_model(folder: Path, tokenizer, seed: int = 0, **config_overrides) -> Path:
    """A saved classifier folder (random weights, seeded) with its tokenizer, as a user would publish it."""
    torch.manual_seed(seed)
    model = KoSentTypeForSequenceClassification(tiny_config(vocab_size=len(tokenizer), **config_overrides)).eval()
    model.save_pretrained(folder)
    save_tokenizer_for_hub(tokenizer, folder, max_length=TINY_MAX_LENGTH)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny models' ops take microseconds; with two threads on a shared, busy machine each op instead waits for
    a descheduled thread (milliseconds). One thread for the module, and the setting put back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_python(code: str, *, python: str = sys.executable, env: dict | None = None, timeout: int = 300) -> dict:
    """Run `code` in a fresh interpreter (no state shared with the test process) and return the JSON it prints last."""
    completed = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        cwd=tempfile.gettempdir(),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
