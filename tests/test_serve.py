"""kosenttype-serve: the real server on a loopback port, talked to by the real InferenceClient and by httpx.

Expectations come from `kosenttype-predict` run on the same sentences (same model, fp32). Every server a test starts
is stopped by that test; every wait and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import KOREAN_SENTENCES

from kosenttype.dynamic_batching import BatcherClosed, DynamicBatcher, QueueFull
from kosenttype.predict import main as predict_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG_SENTENCES = [" ".join(KOREAN_SENTENCES[index : index + 4]) for index in range(len(KOREAN_SENTENCES) - 3)]
SENTENCES = KOREAN_SENTENCES + LONG_SENTENCES
SCORE_TOLERANCE = 1e-5  # predict rounds to 6 decimals; batches of other shapes move fp32 sums by ~1e-7
STARTUP_SECONDS = 180
MAIN_OPTIONS = ("--max_input_length", "300", "--max_body_bytes", "20000", "--max_wait_ms", "20")


@pytest.fixture(scope="module")
def expected(tiny_model_dir, tmp_path_factory) -> dict[str, dict[str, float]]:
    """{sentence: {label: probability}} from kosenttype-predict, fp32, all four labels."""
    folder = tmp_path_factory.mktemp("predict")
    (folder / "in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    arguments = [
        "--model",
        str(tiny_model_dir),
        "--input",
        str(folder / "in.txt"),
        "--output",
        str(folder / "out.jsonl"),
    ]
    assert predict_main([*arguments, "--top_k", "4", "--precision", "fp32", "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (folder / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    return {
        sentence: {pair["label"]: pair["score"] for pair in record["top_k"]}
        for sentence, record in zip(SENTENCES, records, strict=True)
    }


def assert_matches(ranked: list[dict], expected_scores: dict[str, float], top_k: int | None = None) -> None:
    """Labels and scores as predict gave them, most probable first."""
    assert len(ranked) == (top_k or len(expected_scores))
    scores = [item["score"] for item in ranked]
    assert scores == sorted(scores, reverse=True)
    best = sorted(expected_scores.values(), reverse=True)[: len(ranked)]
    assert scores == pytest.approx(best, abs=SCORE_TOLERANCE)
    for item in ranked:
        assert item["score"] == pytest.approx(expected_scores[item["label"]], abs=SCORE_TOLERANCE)


# ---------------------------------------------------------------------------------------------------------------
# A server in a child process
# ---------------------------------------------------------------------------------------------------------------


class ServerProcess:
    """`kosenttype-serve --port 0` in a child process, waited for until /health says 200, and always stopped."""

    def __init__(self, model_dir: Path, log: Path, *options: str, stop_signal: int = signal.SIGTERM) -> None:
        self.log = log
        self.stop_signal = stop_signal
        self.health_responses = 0  # requests of ours the server answered, to balance its own counts
        self.terminated = False
        self.startup_deadline = time.monotonic() + STARTUP_SECONDS  # for starting and loading together
        command = [sys.executable, "-m", "kosenttype.serve", "--model", str(model_dir), "--port", "0"]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, "--precision", "fp32", "--device", "cpu", *options],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                cwd=tempfile.gettempdir(),
            )
        try:
            self.url = self._wait_for_url()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def _wait_for_url(self) -> str:
        while time.monotonic() < self.startup_deadline and self.process.poll() is None:
            if match := re.search(r"listening on (http://\S+);", self.stderr()):
                return match.group(1)
            time.sleep(0.05)
        raise AssertionError(f"the server did not start: {self.stderr()[-2000:]}")

    def _wait_until_ready(self) -> None:
        while time.monotonic() < self.startup_deadline and self.process.poll() is None:
            try:
                status = httpx.get(f"{self.url}/health", timeout=10).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            self.health_responses += 1
            if status == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"the server never became ready: {self.stderr()[-2000:]}")

    def terminate(self) -> None:
        """One stop signal (a second one would only be absorbed by the shutdown already under way)."""
        if self.process.poll() is None and not self.terminated:
            self.terminated = True
            self.process.send_signal(self.stop_signal)

    def stop(self, timeout: float = 90) -> int:
        """The stop signal, then the exit status (killed, and the test failed, if it takes longer than `timeout`)."""
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"the server did not stop within {timeout} s: {self.stderr()[-2000:]}") from None

    def counts(self) -> tuple[int, int]:
        """(received, answered) from the server's last line."""
        match = re.search(r"(\d+) requests received, (\d+) answered", self.stderr())
        assert match, self.stderr()[-2000:]
        return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    running = ServerProcess(tiny_model_dir, tmp_path_factory.mktemp("server") / "stderr.log", *MAIN_OPTIONS)
    yield running
    assert running.stop() == 0, running.stderr()[-2000:]


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def clean_client_env() -> dict[str, str]:
    """InferenceClient refuses every URL while HF_HUB_OFFLINE is set at its import: the client runs without it."""
    return {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}


# ---------------------------------------------------------------------------------------------------------------
# The protocols
# ---------------------------------------------------------------------------------------------------------------


def test_inference_client_gets_predicts_labels_and_scores(server, expected):
    code = f"""
import json
from huggingface_hub import InferenceClient
client = InferenceClient(base_url={server.url!r})
sentences = {SENTENCES!r}
pairs = lambda elements: [{{"label": element.label, "score": element.score}} for element in elements]
full = [pairs(client.text_classification(s)) for s in sentences]
top2 = [pairs(client.text_classification(s, top_k=2, function_to_apply="softmax")) for s in sentences[:3]]
endpoint = InferenceClient(base_url={server.url!r}, provider="hf-inference")
health, info = endpoint.health_check(), endpoint.get_endpoint_info()
print(json.dumps({{"full": full, "top2": top2, "health": health, "info": info}}))
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=clean_client_env()
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = json.loads(completed.stdout.strip().splitlines()[-1])
    for sentence, ranked in zip(SENTENCES, answers["full"], strict=True):
        assert_matches(ranked, expected[sentence])
    for sentence, ranked in zip(SENTENCES, answers["top2"], strict=False):
        assert_matches(ranked, expected[sentence], top_k=2)
    assert answers["health"] is True
    info = answers["info"]
    assert info["labels"] == ["사실형", "추론형", "예측형", "대화형"]
    assert info["precision"] == info["model_dtype"] == "fp32"
    assert info["backend"] == "torch" and info["ready"] is True and info["attributes"] == {}
    assert info["model_type"]["classifier"]["id2label"]["3"] == "대화형"
    assert info["batching"] == {"max_batch_size": 64, "max_batch_tokens": 256, "max_wait_ms": 20.0, "max_queue": 1024}
    assert info["max_input_length"] == 64  # the tiny model's positions cap predict's default of 256 tokens


def test_hf_route_batch_and_score_functions(server, expected):
    sentences = SENTENCES[:5]
    response = httpx.post(f"{server.url}/", json={"inputs": sentences}, timeout=30)
    assert response.status_code == 200
    for sentence, ranked in zip(sentences, response.json(), strict=True):
        assert_matches(ranked, expected[sentence])
    raw = httpx.post(
        f"{server.url}/", json={"inputs": sentences[0], "parameters": {"function_to_apply": "none"}}, timeout=30
    ).json()[0]
    sigmoid = httpx.post(
        f"{server.url}/", json={"inputs": sentences[0], "parameters": {"function_to_apply": "sigmoid"}}, timeout=30
    ).json()[0]
    logits = torch.tensor([item["score"] for item in raw])
    softmax = dict(zip([item["label"] for item in raw], torch.softmax(logits, 0).tolist(), strict=True))
    assert softmax == pytest.approx(expected[sentences[0]], abs=SCORE_TOLERANCE)
    logit_of = {item["label"]: item["score"] for item in raw}
    for item in sigmoid:
        assert item["score"] == pytest.approx(float(torch.sigmoid(torch.tensor(logit_of[item["label"]]))), abs=1e-6)


def test_tei_predict_route(server, expected):
    single = httpx.post(f"{server.url}/predict", json={"inputs": SENTENCES[0]}, timeout=30)
    assert single.status_code == 200
    assert_matches(single.json(), expected[SENTENCES[0]])
    one_item_list = httpx.post(f"{server.url}/predict", json={"inputs": [SENTENCES[1]]}, timeout=30).json()
    assert_matches(one_item_list, expected[SENTENCES[1]])
    batch = httpx.post(
        f"{server.url}/predict", json={"inputs": [[text] for text in SENTENCES[:4]], "truncate": True}, timeout=30
    )
    assert batch.status_code == 200
    for sentence, ranked in zip(SENTENCES[:4], batch.json(), strict=True):
        assert_matches(ranked, expected[sentence])
    raw = httpx.post(f"{server.url}/predict", json={"inputs": SENTENCES[2], "raw_scores": True}, timeout=30).json()
    probabilities = torch.softmax(torch.tensor([item["score"] for item in raw]), 0).tolist()
    assert dict(zip([item["label"] for item in raw], probabilities, strict=True)) == pytest.approx(
        expected[SENTENCES[2]], abs=SCORE_TOLERANCE
    )


def test_classify_route_gives_predicts_records(server, expected):
    response = httpx.post(f"{server.url}/classify", json={"inputs": SENTENCES[:3], "top_k": 2}, timeout=30)
    assert response.status_code == 200
    for index, (sentence, record) in enumerate(zip(SENTENCES[:3], response.json(), strict=True)):
        assert record["id"] == index and "attributes" not in record
        best = max(expected[sentence], key=expected[sentence].get)
        assert record["label"] == best and record["score"] == pytest.approx(expected[sentence][best], abs=1e-5)
        assert_matches(record["top_k"], expected[sentence], top_k=2)


def test_concurrent_requests_are_batched_and_answered_as_alone(server, expected):
    """Requests sent together share model calls (a batch of more than one sentence in /metrics), and each
    gets exactly the answer predict gave its sentence."""
    before = httpx.get(f"{server.url}/metrics", timeout=30).text
    sentences = SENTENCES * 2

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            requests = [client.post("/", json={"inputs": sentence}) for sentence in sentences]
            return await asyncio.wait_for(asyncio.gather(*requests), 120)

    responses = asyncio.run(burst())
    assert [response.status_code for response in responses] == [200] * len(sentences)
    for sentence, response in zip(sentences, responses, strict=True):
        assert_matches(response.json()[0], expected[sentence])
    after = httpx.get(f"{server.url}/metrics", timeout=30).text
    calls = metric(after, "kosenttype_batch_size_count") - metric(before, "kosenttype_batch_size_count")
    sentences_run = metric(after, "kosenttype_batch_size_sum") - metric(before, "kosenttype_batch_size_sum")
    single = metric(after, 'kosenttype_batch_size_bucket{le="1"}') - metric(
        before, 'kosenttype_batch_size_bucket{le="1"}'
    )
    assert sentences_run == len(sentences)
    assert calls < len(sentences) and calls - single >= 1  # at least one model call took more than one sentence
    assert 'kosenttype_requests_total{route="/",status="200"}' in after
    assert metric(after, "kosenttype_queue_sentences") == 0
    assert metric(after, "kosenttype_model_ready") == 1


# ---------------------------------------------------------------------------------------------------------------
# Bad requests: each gets its status and a JSON error, and the server goes on serving
# ---------------------------------------------------------------------------------------------------------------

OVER_LONG_TEXT = "가" * 301
TOKEN_HEAVY_TEXT = " ".join(KOREAN_SENTENCES)[:290]  # far more than the tiny model's 64 tokens
BAD_REQUESTS = [
    ("malformed JSON", "/", {"content": b'{"inputs": "x"', "headers": {"content-type": "application/json"}}, 400),
    ("not JSON at all", "/", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400),
    ("a list instead of an object", "/", {"json": ["문장"]}, 422),
    ("no inputs", "/", {"json": {"text": "문장"}}, 422),
    ("inputs a number", "/", {"json": {"inputs": 5}}, 422),
    ("inputs NaN", "/", {"content": b'{"inputs": NaN}', "headers": {"content-type": "application/json"}}, 422),
    ("a number among the inputs", "/", {"json": {"inputs": ["문장", 3]}}, 422),
    ("empty text", "/", {"json": {"inputs": ""}}, 422),
    ("blank text", "/", {"json": {"inputs": " \t\n\u200b"}}, 422),
    ("NUL only", "/", {"json": {"inputs": "\u0000"}}, 422),
    (
        "a lone surrogate",
        "/",
        {"content": b'{"inputs": "\\ud800"}', "headers": {"content-type": "application/json"}},
        422,
    ),
    ("no inputs in the list", "/", {"json": {"inputs": []}}, 422),
    ("too many inputs", "/", {"json": {"inputs": ["문장."] * 33}}, 413),
    ("an over-long text", "/", {"json": {"inputs": OVER_LONG_TEXT}}, 413),
    ("an over-long body", "/", {"json": {"inputs": "가" * 21000}}, 413),
    ("an over-long chunked body", "/", {"content": iter([b'{"inputs": "' + b"a" * 15000, b"a" * 15000 + b'"}'])}, 413),
    ("top_k 0", "/", {"json": {"inputs": "문장", "parameters": {"top_k": 0}}}, 422),
    ("top_k a string", "/", {"json": {"inputs": "문장", "parameters": {"top_k": "2"}}}, 422),
    ("unknown function", "/", {"json": {"inputs": "문장", "parameters": {"function_to_apply": "relu"}}}, 422),
    ("unknown parameter", "/", {"json": {"inputs": "문장", "parameters": {"topk": 2}}}, 422),
    ("a TEI sentence pair", "/predict", {"json": {"inputs": ["질문?", "답."]}}, 422),
    ("a pair in a TEI batch", "/predict", {"json": {"inputs": [["문장."], ["질문?", "답."]]}}, 422),
    ("left truncation", "/predict", {"json": {"inputs": "문장.", "truncation_direction": "left"}}, 422),
    ("raw_scores a string", "/predict", {"json": {"inputs": "문장.", "raw_scores": "yes"}}, 422),
    ("too many tokens, truncate false", "/predict", {"json": {"inputs": TOKEN_HEAVY_TEXT, "truncate": False}}, 413),
    ("top_k 0 on /classify", "/classify", {"json": {"inputs": "문장.", "top_k": 0}}, 422),
]


def test_each_bad_request_gets_its_status_and_the_next_good_one_succeeds(server, expected):
    good = {"inputs": SENTENCES[0]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for description, route, request, status in BAD_REQUESTS:
            response = client.post(route, **request)
            assert response.status_code == status, (description, response.text)
            body = response.json()
            assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"], description
            after = client.post("/", json=good)
            assert after.status_code == 200, (description, after.text)
            assert_matches(after.json()[0], expected[SENTENCES[0]])
        for method, route, status in (("PUT", "/", 405), ("GET", "/nowhere", 404), ("DELETE", "/predict", 405)):
            response = client.request(method, route)
            assert response.status_code == status and response.json()["error"]
        # Truncated, the same token-heavy text is fine, and so is a text at exactly the character limit.
        assert client.post("/predict", json={"inputs": TOKEN_HEAVY_TEXT, "truncate": True}).status_code == 200
        assert client.post("/", json={"inputs": "가" * 300}).status_code == 200
        assert client.get("/").json() == {"status": "ok"}  # GET / is /health, as in TEI
        metrics = client.get("/metrics").text
    assert 'kosenttype_requests_total{route="/",status="413"}' in metrics
    assert 'kosenttype_requests_total{route="other",status="404"}' in metrics


# ---------------------------------------------------------------------------------------------------------------
# Load, readiness and shutdown
# ---------------------------------------------------------------------------------------------------------------


def test_full_queue_refuses_with_retry_after_and_recovers(tiny_model_dir, tmp_path, expected):
    """One sentence per model call and room for one waiting request: a burst of 32-sentence requests overflows the
    queue. The refused get 429 with Retry-After at once; the accepted get predict's answers."""
    options = ("--max_batch_size", "1", "--max_queue", "32", "--max_client_batch_size", "32", "--max_wait_ms", "0")
    running = ServerProcess(tiny_model_dir, tmp_path / "stderr.log", *options)
    try:
        batch = (LONG_SENTENCES * 3)[:32]

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=running.url, timeout=120) as client:
                requests = [client.post("/", json={"inputs": batch}) for _ in range(24)]
                return await asyncio.wait_for(asyncio.gather(*requests), 180)

        refused: list[httpx.Response] = []
        for _ in range(3):  # a very slow machine might drain the queue as fast as it fills: try again, boundedly
            responses = asyncio.run(burst())
            assert {response.status_code for response in responses} <= {200, 429}
            for response in responses:
                if response.status_code == 200:
                    for sentence, ranked in zip(batch, response.json(), strict=True):
                        assert_matches(ranked, expected[sentence])
            refused = [response for response in responses if response.status_code == 429]
            if refused:
                break
        assert refused, "no request was refused"
        for response in refused:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error_type"] == "overloaded" and "queue is full" in response.json()["error"]
        recovered = httpx.post(f"{running.url}/", json={"inputs": SENTENCES[0]}, timeout=30)
        assert recovered.status_code == 200
        assert_matches(recovered.json()[0], expected[SENTENCES[0]])
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_during_a_burst_answers_every_accepted_request(tiny_model_dir, tmp_path, expected, stop_signal):
    """SIGTERM (or SIGHUP) while 16 clients keep sending: every request either got a 200 with predict's answer or was
    refused before the server accepted it (connection refused or closed before a byte of response); the server
    answered every request it received, the clients received every answer, and it exits 0."""
    running = ServerProcess(tiny_model_dir, tmp_path / "stderr.log", "--max_batch_size", "2", stop_signal=stop_signal)
    outcomes = {"ok": 0, "refused_http": 0, "refused_transport": 0}
    wrong: list[str] = []
    total = 240

    async def burst() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for index in range(total):
            queue.put_nowait(SENTENCES[index % len(SENTENCES)])
        answered = 0

        async def client_loop(client: httpx.AsyncClient) -> None:
            nonlocal answered
            while not queue.empty():
                sentence = queue.get_nowait()
                try:
                    response = await client.post("/", json={"inputs": sentence})
                except httpx.TransportError:
                    outcomes["refused_transport"] += 1
                    continue
                answered += 1
                if answered == 30:
                    running.terminate()
                if response.status_code != 200:
                    outcomes["refused_http"] += 1
                    continue
                outcomes["ok"] += 1
                try:
                    assert_matches(response.json()[0], expected[sentence])
                except AssertionError as error:
                    wrong.append(f"{sentence}: {error}")

        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=running.url, timeout=60, limits=limits) as client:
            await asyncio.wait_for(asyncio.gather(*(client_loop(client) for _ in range(16))), 180)

    try:
        asyncio.run(burst())
    finally:
        status = running.stop()
    assert status == 0, running.stderr()[-2000:]
    assert not wrong, wrong[:3]
    assert sum(outcomes.values()) == total
    assert outcomes["ok"] >= 30
    received, answered = running.counts()
    responses = outcomes["ok"] + outcomes["refused_http"]
    assert received == answered == responses + running.health_responses, (outcomes, received, answered)
    assert f"stopped by {stop_signal.name}" in running.stderr()


@pytest.fixture
def app_in_thread(tiny_model_dir):
    """The app served by uvicorn in a thread with no model yet: (url, service); the test attaches one, as the
    loader thread does. Stopped (and its lifespan run) at teardown."""
    import uvicorn

    from kosenttype.server_app import InferenceService, ServerMetrics, ServingLimits, create_app, listening_socket

    service = InferenceService(str(tiny_model_dir), None, ServingLimits(), ServerMetrics())
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", service
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive()
    assert service.batcher is None or not service.batcher._worker.is_alive()  # the lifespan closed it


def test_health_is_503_until_the_model_is_loaded(app_in_thread, tiny_model_dir):
    from kosenttype.engine import load_classifier

    url, service = app_in_thread
    loading = httpx.get(f"{url}/health", timeout=10)
    assert loading.status_code == 503 and int(loading.headers["retry-after"]) >= 1
    assert loading.json()["error_type"] == "unhealthy"
    refused = httpx.post(f"{url}/", json={"inputs": "문장."}, timeout=10)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert httpx.get(f"{url}/info", timeout=10).json()["ready"] is False
    assert "kosenttype_model_ready 0" in httpx.get(f"{url}/metrics", timeout=10).text
    assert service.attach(load_classifier(tiny_model_dir, device="cpu", precision="fp32"))
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    assert httpx.post(f"{url}/", json={"inputs": "문장."}, timeout=10).status_code == 200


def test_attribute_heads_come_on_classify_and_leave_the_hf_shape_alone(app_in_thread, tiny_tokenizer, tmp_path):
    """A model with attribute heads: /classify gives predict's records, attributes included; POST / and /predict
    keep exactly their protocols' shape; /info lists the heads."""
    from conftest import save_tiny_model

    from kosenttype import ATTRIBUTE_LABELS
    from kosenttype.engine import load_classifier

    save_tiny_model(tmp_path / "model", tiny_tokenizer, seed=1, attributes=ATTRIBUTE_LABELS)
    sentences = SENTENCES[:4]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    arguments = ["--model", str(tmp_path / "model"), "--input", str(tmp_path / "in.txt")]
    assert (
        predict_main([*arguments, "--output", str(tmp_path / "out.jsonl"), "--top_k", "2", "--precision", "fp32"]) == 0
    )
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]

    url, service = app_in_thread
    assert service.attach(load_classifier(tmp_path / "model", device="cpu", precision="fp32"))
    served = httpx.post(f"{url}/classify", json={"inputs": sentences, "top_k": 2}, timeout=30).json()
    for record, answer in zip(records, served, strict=True):
        assert answer.keys() == record.keys() >= {"label", "score", "top_k", "attributes"}
        assert answer["label"] == record["label"] and answer["score"] == pytest.approx(record["score"], abs=1e-5)
        for axis, labelled in record["attributes"].items():
            assert answer["attributes"][axis]["label"] == labelled["label"]
            assert answer["attributes"][axis]["score"] == pytest.approx(labelled["score"], abs=1e-5)
    hf = httpx.post(f"{url}/", json={"inputs": sentences[0]}, timeout=30).json()
    assert [set(item) for item in hf[0]] == [{"label", "score"}] * 4
    tei = httpx.post(f"{url}/predict", json={"inputs": sentences[0]}, timeout=30).json()
    assert [set(item) for item in tei] == [{"label", "score"}] * 4
    info = httpx.get(f"{url}/info", timeout=10).json()
    assert info["attributes"] == {axis: list(labels) for axis, labels in ATTRIBUTE_LABELS.items()}


# ---------------------------------------------------------------------------------------------------------------
# Startup errors: one line, exit 2
# ---------------------------------------------------------------------------------------------------------------


def run_serve(*arguments: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kosenttype.serve", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        cwd=tempfile.gettempdir(),
    )


def error_line(completed: subprocess.CompletedProcess) -> str:
    lines = completed.stderr.strip().splitlines()
    assert "Traceback" not in completed.stderr, completed.stderr
    return lines[-1]


def test_port_in_use_is_one_line_and_exit_2(tiny_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = run_serve("--model", str(tiny_model_dir), "--port", str(port))
    assert completed.returncode == 2
    assert error_line(completed).startswith(f"kosenttype-serve: error: cannot listen on 127.0.0.1:{port}: ")
    assert len(completed.stderr.strip().splitlines()) == 1


def test_missing_model_is_one_line_and_exit_2(tmp_path):
    completed = run_serve("--model", str(tmp_path / "no_such_model"), "--port", "0")
    assert completed.returncode == 2
    assert error_line(completed) == f"kosenttype-serve: error: model folder not found: {tmp_path / 'no_such_model'}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--max_batch_size", "0"), "--max_batch_size must be at least 1, got 0"),
        (("--max_queue", "8"), "--max_queue (8) must be at least --max_client_batch_size (32)"),
        (("--port", "70000"), "--port must be between 0 and 65535, got 70000"),
    ],
)
def test_bad_limits_are_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    from kosenttype.serve import main

    assert main(["--model", str(tmp_path), *arguments]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kosenttype-serve: error: {message}")


def test_endpoint_handler_answers_as_the_server(tiny_model_dir, expected):
    from pydantic import ValidationError

    from kosenttype.handler import EndpointHandler
    from kosenttype.server_app import ApiError

    handler = EndpointHandler(str(tiny_model_dir), precision="fp32")
    [ranked] = handler({"inputs": SENTENCES[0]})
    assert_matches(ranked, expected[SENTENCES[0]])
    for sentence, ranked in zip(
        SENTENCES[:3], handler({"inputs": SENTENCES[:3], "parameters": {"top_k": 2}}), strict=True
    ):
        assert_matches(ranked, expected[sentence], top_k=2)
    with pytest.raises(ApiError, match="empty sentence"):
        handler({"inputs": "  "})
    with pytest.raises(ValidationError):
        handler({"inputs": 5})


class NonFiniteBackend:
    """The tiny model's backend with its type logits replaced by NaN: what corrupt weights give."""

    def __init__(self, backend) -> None:
        self.backend, self.name, self.device, self.precision = backend, backend.name, backend.device, backend.precision

    def logits(self, input_ids, attention_mask):
        logits = self.backend.logits(input_ids, attention_mask)
        return {**logits, "type": np.full_like(logits["type"], np.nan)}


def test_non_finite_scores_are_a_500_never_nan_in_json(app_in_thread, tiny_model_dir):
    from kosenttype.engine import load_classifier
    from kosenttype.handler import EndpointHandler
    from kosenttype.server_app import ApiError

    classifier = load_classifier(tiny_model_dir, device="cpu", precision="fp32")
    broken = dataclasses.replace(classifier, backend=NonFiniteBackend(classifier.backend))
    url, service = app_in_thread
    assert service.attach(broken)
    for route in ("/", "/predict", "/classify"):
        response = httpx.post(f"{url}{route}", json={"inputs": "문장."}, timeout=30)
        assert response.status_code == 500, (route, response.text)
        assert response.json() == {
            "error": "the model produced non-finite scores (NaN or inf); its weights may be corrupt",
            "error_type": "backend",
        }
    handler = EndpointHandler(str(tiny_model_dir), precision="fp32")
    handler.classifier = broken
    with pytest.raises(ApiError, match="non-finite scores") as refused:
        handler({"inputs": "문장."})
    assert refused.value.status_code == 500


# ---------------------------------------------------------------------------------------------------------------
# The batcher itself
# ---------------------------------------------------------------------------------------------------------------


def test_batcher_batches_waiting_jobs_refuses_past_its_queue_and_drains_on_close():
    """A gate holds the worker inside its first batch, so the queue fills deterministically."""
    gate, batches = threading.Event(), []

    def process(items: list[int]) -> list[int]:
        batches.append(list(items))
        gate.wait(30)
        return [item * 10 for item in items]

    batcher = DynamicBatcher(process, max_batch_size=4, max_wait_s=0.0, max_queue=5)
    batcher.start()
    try:
        first = batcher.submit([1])
        deadline = time.monotonic() + 10
        while not batches and time.monotonic() < deadline:  # the worker is now held inside the first batch
            time.sleep(0.01)
        waiting: list[Future] = [batcher.submit([2, 3]), batcher.submit([4]), batcher.submit([5, 6])]
        assert batcher.queued_items == 5 and batcher.queued_jobs == 3
        with pytest.raises(QueueFull):
            batcher.submit([7])
        assert batcher.queued_items == 5  # the refused job left nothing behind
        gate.set()
        assert first.result(10) == [10]
        assert [future.result(10) for future in waiting] == [[20, 30], [40], [50, 60]]
        assert batches == [[1], [2, 3, 4], [5, 6]]  # whole jobs, up to 4 items per batch
        late = batcher.submit([8])
    finally:
        gate.set()
        assert batcher.close(10)
    assert late.result(0) == [80]  # accepted before close: answered before the worker stopped
    with pytest.raises(BatcherClosed):
        batcher.submit([9])


def test_batcher_waits_for_a_batch_to_fill_and_passes_model_errors_to_every_job():
    calls: list[int] = []

    def process(items: list[str]) -> list[str]:
        calls.append(len(items))
        if "boom" in items:
            raise RuntimeError("model failed")
        return [item.upper() for item in items]

    batcher = DynamicBatcher(process, max_batch_size=3, max_wait_s=5.0, max_queue=10)
    batcher.start()
    try:
        started = time.monotonic()
        futures = [batcher.submit([text]) for text in ("a", "b", "c")]
        assert [future.result(10) for future in futures] == [["A"], ["B"], ["C"]]
        assert time.monotonic() - started < 4  # a full batch runs at once, without waiting out max_wait
        assert calls == [3]
        failing = [batcher.submit(["x"]), batcher.submit(["boom"]), batcher.submit(["y"])]
        for future in failing:
            with pytest.raises(RuntimeError, match="model failed"):
                future.result(10)
        assert batcher.submit(["z", "w", "v"]).result(10) == ["Z", "W", "V"]  # the worker goes on
    finally:
        assert batcher.close(10)
