"""The HTTP server behind `kosenttype-serve` (FastAPI): the Hugging Face Inference API's text classification (POST /),
Text Embeddings Inference's POST /predict, kosenttype's own records (POST /classify), GET /health, /info and
/metrics; every request's sentences share model calls through one `DynamicBatcher`. Protocols, errors: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from itertools import accumulate
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .classifier import NON_FINITE_MESSAGE, all_finite, ranked_labels
from .dynamic_batching import BatcherClosed, DynamicBatcher, QueueFull
from .engine import TYPE_HEAD, Classifier, EngineSettings, sigmoid, softmax
from .errors import EXIT_OK, KoSentTypeError, one_line
from .records import text_error
from .serving_limits import CPU_SERVER_BATCH_TOKENS, ServingLimits

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
RETRY_AFTER_OVERLOADED_S = 1
RETRY_AFTER_LOADING_S = 5
SCORE_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "sigmoid": sigmoid,
    "none": lambda logits: logits,
}


class ApiError(HTTPException):
    """A request the server answers with an error: its HTTP status, TEI's `error_type`, and a one-line message."""

    def __init__(self, status: int, message: str, error_type: str = "validation", retry_after: int | None = None):
        super().__init__(status, message, {"Retry-After": str(retry_after)} if retry_after is not None else None)
        self.error_type = error_type


def error_response(request: Any, error: HTTPException) -> JSONResponse:
    """TEI's error body, {"error", "error_type"}, for any HTTP error (FastAPI's own, such as 404, too)."""
    body = {"error": str(error.detail), "error_type": getattr(error, "error_type", "validation")}
    return JSONResponse(body, error.status_code, headers=error.headers)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        """Prometheus' cumulative `_bucket` lines (upper bounds `le`), then `_sum` and `_count`."""
        cumulative = list(accumulate(self.counts))
        prefix, braces = (f"{labels},", f"{{{labels}}}") if labels else ("", "")
        bounds = [*self.buckets, "+Inf"]
        return [
            *(
                f'{name}_bucket{{{prefix}le="{bound}"}} {count}'
                for bound, count in zip(bounds, cumulative, strict=True)
            ),
            f"{name}_sum{braces} {self.sum}",
            f"{name}_count{braces} {cumulative[-1]}",
        ]


def header(name: str, kind: str, description: str) -> list[str]:
    return [f"# HELP {name} {description}", f"# TYPE {name} {kind}"]


class ServerMetrics:
    """What /metrics reports, updated from the event loop (requests) and the worker thread (batches)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.request_seconds: dict[str, Histogram] = {}
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)
        self.received = 0
        self.answered = 0

    def request_received(self) -> None:
        with self._lock:
            self.received += 1

    def request_answered(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.answered += 1
            self.requests[route, status] += 1
            self.request_seconds.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch_done(self, sentences: int, seconds: float) -> None:
        with self._lock:
            self.batch_sizes.observe(sentences)
            self.batch_seconds.observe(seconds)

    def exposition(self, queued_sentences: int, queued_requests: int, ready: bool) -> str:
        with self._lock:
            lines = [
                *header("kosenttype_requests_total", "counter", "HTTP requests answered, by route and status."),
                *(
                    f'kosenttype_requests_total{{route="{route}",status="{status}"}} {count}'
                    for (route, status), count in sorted(self.requests.items())
                ),
                *header("kosenttype_requests_in_flight", "gauge", "HTTP requests received and not yet answered."),
                f"kosenttype_requests_in_flight {self.received - self.answered}",
                *header(
                    "kosenttype_request_duration_seconds",
                    "histogram",
                    "Time from receiving a request to its last byte sent.",
                ),
                *(
                    line
                    for route, histogram in sorted(self.request_seconds.items())
                    for line in histogram.lines("kosenttype_request_duration_seconds", f'route="{route}"')
                ),
                *header("kosenttype_queue_sentences", "gauge", "Sentences waiting for a batch."),
                f"kosenttype_queue_sentences {queued_sentences}",
                *header("kosenttype_queue_requests", "gauge", "Requests waiting for a batch."),
                f"kosenttype_queue_requests {queued_requests}",
                *header("kosenttype_batch_size", "histogram", "Sentences per model call."),
                *self.batch_sizes.lines("kosenttype_batch_size"),
                *header(
                    "kosenttype_batch_duration_seconds", "histogram", "Time of one model call (tokenizing included)."
                ),
                *self.batch_seconds.lines("kosenttype_batch_duration_seconds"),
                *header("kosenttype_model_ready", "gauge", "1 once the model is loaded and the server takes requests."),
                f"kosenttype_model_ready {int(ready)}",
            ]
        return "\n".join(lines) + "\n"


class ServerMiddleware:
    """ASGI middleware: 413 for a body over `max_body_bytes` (from Content-Length, or while reading a chunked one);
    each request counted when it arrives and when answered, by route template ("other" for unknown paths, so that
    random URLs can't grow the metrics) and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status, received = 500, 0
        self.metrics.request_received()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # FastAPI re-raises an HTTPException from reading the body
                raise self.too_large(received)
            return message

        declared = Headers(scope=scope).get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await error_response(None, self.too_large(int(declared)))(scope, receive, send_and_record)
            else:
                await self.app(scope, receive_within_limit, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.request_answered(route, status, time.perf_counter() - started)

    def too_large(self, size: int) -> ApiError:
        return ApiError(413, f"the request body is larger than the limit of {self.max_body_bytes} bytes (got {size})")


class InferenceService:
    """The loaded classifier behind one batcher, whose worker thread alone runs the model and the engine's
    tokenizer (the event loop only counts tokens, for TEI's `truncate: false`); not ready until `attach`."""

    def __init__(self, model: str, revision: str | None, limits: ServingLimits, metrics: ServerMetrics) -> None:
        self.model, self.revision, self.limits, self.metrics = model, revision, limits, metrics
        self.classifier: Classifier | None = None
        self.settings: EngineSettings | None = None
        self.batcher: DynamicBatcher[str, dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def ready(self) -> bool:
        return self.batcher is not None and not self._closed

    def attach(self, classifier: Classifier) -> bool:
        """Start serving `classifier`; False if the server is already shutting down."""
        limits = self.limits
        requested = EngineSettings(limits.max_batch_size, limits.max_length, max_batch_tokens=limits.max_batch_tokens)
        settings = classifier.resolve(requested, cpu_batch_tokens=CPU_SERVER_BATCH_TOKENS)
        batcher = DynamicBatcher(
            lambda texts: logits_rows(classifier, texts, settings),
            max_batch_size=limits.max_batch_size,
            max_wait_s=limits.max_wait_ms / 1000,
            max_queue=limits.max_queue,
            on_batch=self.metrics.batch_done,
            name="kosenttype-model",
        )
        with self._lock:
            if self._closed:
                return False
            self.classifier, self.settings = classifier, settings
            batcher.start()
            self.batcher = batcher
        return True

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work and let the worker finish what it accepted."""
        with self._lock:
            self._closed = True
        if self.batcher is not None:
            self.batcher.close(timeout)

    def loaded(self) -> Classifier:
        """The classifier, or 503 while it loads (or once the server is shutting down)."""
        if self.classifier is None or not self.ready:
            reason = "the server is shutting down" if self._closed else "the model is still loading"
            raise ApiError(503, reason, "unhealthy", RETRY_AFTER_LOADING_S)
        return self.classifier

    def check_untruncated(self, texts: Sequence[str], single: bool) -> None:
        """TEI's `truncate: false`: a sentence longer than the model takes is refused rather than cut."""
        classifier = self.loaded()
        limit = self.settings.max_length
        for index, count in enumerate(classifier.token_counts(texts)):
            if count > limit:
                where = "inputs" if single else f"inputs[{index}]"
                raise ApiError(413, f"{where} must have less than {limit} tokens. Given: {count}")

    async def logits(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        """Each sentence's logits per head, batched with whatever other requests are waiting."""
        self.loaded()
        try:
            future = self.batcher.submit(texts)
        except QueueFull as error:
            raise ApiError(429, f"{error}; retry later", "overloaded", RETRY_AFTER_OVERLOADED_S) from error
        except BatcherClosed as error:
            raise ApiError(503, str(error), "unhealthy", RETRY_AFTER_LOADING_S) from error
        try:
            rows = await asyncio.wrap_future(future)
        except Exception as error:
            raise ApiError(500, f"the model failed: {type(error).__name__}: {one_line(error)}", "backend") from error
        refuse_non_finite(values for row in rows for values in row.values())
        return rows

    def description(self) -> dict[str, Any]:
        """/info: TEI's field names where they exist (model_id, model_sha, model_dtype, model_type,
        max_input_length, max_client_batch_size, auto_truncate, version), then kosenttype's own."""
        classifier, limits = self.classifier, self.limits
        settings = self.settings or EngineSettings(
            max_length=limits.max_length, max_batch_tokens=limits.max_batch_tokens
        )
        info: dict[str, Any] = {"model_id": self.model, "model_sha": self.revision, "version": __version__}
        if classifier is not None:
            labels = classifier.labels
            info |= {
                "model_dtype": classifier.precision,
                "model_type": {
                    "classifier": {
                        "id2label": {str(index): label for index, label in enumerate(labels)},
                        "label2id": {label: index for index, label in enumerate(labels)},
                    }
                },
                "max_input_length": settings.max_length,
                "backend": classifier.backend.name,
                "device": classifier.device,
                "precision": classifier.precision,
                "labels": labels,
                "attributes": classifier.attributes,
            }
        return info | {
            "ready": self.ready,
            "max_client_batch_size": limits.max_client_batch_size,
            "auto_truncate": True,
            "batching": {
                "max_batch_size": limits.max_batch_size,
                "max_batch_tokens": settings.max_batch_tokens,
                "max_wait_ms": limits.max_wait_ms,
                "max_queue": limits.max_queue,
            },
            "limits": {
                "max_input_characters": limits.max_input_length,
                "max_length_tokens": settings.max_length,
                "max_body_bytes": limits.max_body_bytes,
            },
        }


def refuse_non_finite(logits: Iterable[np.ndarray]) -> None:
    """A 500 rather than NaN scores, which are not JSON: the model's weights are broken, not the request."""
    if not all_finite(logits):
        raise ApiError(500, NON_FINITE_MESSAGE, "backend")


def checked_texts(texts: Sequence[Any], single: bool, limits: ServingLimits) -> list[str]:
    """The request's sentences, or a 4xx naming the first one that can't be classified."""
    if not texts:
        raise ApiError(422, "inputs is empty: send at least one sentence")
    if len(texts) > limits.max_client_batch_size:
        raise ApiError(413, f"batch size {len(texts)} > maximum allowed batch size {limits.max_client_batch_size}")
    for index, text in enumerate(texts):
        where = "inputs" if single else f"inputs[{index}]"
        error = text_error(text, where)
        if error is not None:
            raise ApiError(422, error.message)
        if len(text) > limits.max_input_length:
            raise ApiError(413, f"{where} has {len(text)} characters, more than the limit of {limits.max_input_length}")
    return list(texts)


def logits_rows(classifier: Classifier, texts: list[str], settings: EngineSettings) -> list[dict[str, np.ndarray]]:
    """One engine call for the whole dynamic batch, split back into one {head: logits} row per sentence."""
    logits = classifier.logits(texts, settings)
    return [dict(zip(logits, values, strict=True)) for values in zip(*logits.values(), strict=True)]


def text_classification_output(
    classifier: Classifier, type_logits: Sequence[np.ndarray], parameters: TextClassificationParameters | None
) -> list[list[dict[str, Any]]]:
    """Each sentence's labels and scores, highest first; by default the model's own scores, as transformers'
    text-classification pipeline chooses (softmax, or a sigmoid per label for multi-label models)."""
    parameters = parameters or TextClassificationParameters()
    score = SCORE_FUNCTIONS.get(parameters.function_to_apply, classifier.probabilities)
    ranked = (ranked_labels(score(logits), classifier.labels, parameters.top_k) for logits in type_logits)
    return [[{"label": label, "score": value} for label, value in pairs] for pairs in ranked]


class TextClassificationParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: StrictInt | None = Field(None, ge=1, description="Only the k most probable labels (default: all).")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="How logits become scores (default: the model's own, softmax for this model)."
    )


class SentencesRequest(BaseModel):
    """A body whose `inputs` is a sentence or a list of sentences (a batch)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": "내일은 비가 올 것이다."}]})

    inputs: StrictStr | list[StrictStr]

    def sentences(self) -> tuple[list[str], bool]:
        """(sentences, whether `inputs` was a single sentence)."""
        return ([self.inputs], True) if isinstance(self.inputs, str) else (self.inputs, False)


class TextClassificationRequest(SentencesRequest):
    """The Hugging Face Inference API's text-classification input; a list of sentences is a batch."""

    parameters: TextClassificationParameters | None = None


class LabelScore(BaseModel):
    label: str
    score: float


class PredictRequest(BaseModel):
    """Text Embeddings Inference's /predict input: a sentence, or a batch [[sentence], [sentence], ...]."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": [["문장 하나."], ["둘?"]]}]})

    inputs: StrictStr | list[StrictStr] | list[list[StrictStr]]
    truncate: StrictBool | None = Field(None, description="Cut sentences longer than the model takes (default: true).")
    truncation_direction: Literal["right", "Right"] = "right"
    raw_scores: StrictBool = Field(False, description="Logits instead of probabilities.")


class ClassifyRequest(SentencesRequest):
    """kosenttype's own route: the records `kosenttype-predict` writes, attribute heads included."""

    top_k: StrictInt = Field(1, ge=1, description="Also return the k most probable sentence types.")


def tei_sentences(inputs: str | list[str] | list[list[str]]) -> tuple[list[str], bool]:
    """TEI's reading of `inputs`: (sentences, is_single). A list of two strings is a sentence pair in TEI: refused,
    as are lists of more than one bare string, since this model classifies one sentence."""
    if isinstance(inputs, str):
        return [inputs], True
    if len(inputs) == 1 and isinstance(inputs[0], str):
        return [inputs[0]], True
    if inputs and all(isinstance(item, str) for item in inputs):
        raise ApiError(
            422,
            "inputs: a list of strings is a sentence pair (or a malformed batch) in TEI's protocol, and this model "
            'classifies single sentences; send a batch as [["sentence 1"], ["sentence 2"]]',
        )
    for index, item in enumerate(inputs):
        if len(item) != 1:
            raise ApiError(
                422,
                f"inputs[{index}] has {len(item)} strings: each batch item must be [sentence]; "
                "sentence pairs are not supported by this single-sentence classifier",
            )
    return [item[0] for item in inputs], False


def validation_error(error: RequestValidationError) -> ApiError:
    """One line for what FastAPI found wrong with a body: 400 if it isn't JSON at all, else 422 naming the fields."""
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error", "invalid JSON")
            return ApiError(400, f"the body is not valid JSON: {reason} at position {problem['loc'][-1]}")
    parts = []
    for problem in problems:
        location = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "body"
        message = problem.get("msg", "invalid")
        if location == "body":
            message += ' (send a JSON object with "inputs", and the header Content-Type: application/json)'
        parts.append(f"{location}: {message}")
    return ApiError(422, one_line("; ".join(dict.fromkeys(parts))))


ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON.",
    413: "Larger than a limit: the body, sentences per request, characters per sentence, or tokens (truncate=false).",
    422: "Wrong types, unknown fields, empty or blank sentences, sentence pairs.",
    429: "The queue is full; retry after Retry-After seconds.",
    503: "The model is still loading; retry after Retry-After seconds.",
}


def create_app(service: InferenceService) -> FastAPI:
    """The FastAPI app over `service`; its lifespan's end closes the service once uvicorn has answered everyone."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(service.close)

    app = FastAPI(
        title="kosenttype-serve",
        version=__version__,
        summary="Korean sentence-type classification over HTTP: the Hugging Face Inference API and TEI protocols.",
        lifespan=lifespan,
        exception_handlers={
            HTTPException: error_response,
            RequestValidationError: lambda request, error: error_response(request, validation_error(error)),
        },
    )
    app.add_middleware(ServerMiddleware, metrics=service.metrics, max_body_bytes=service.limits.max_body_bytes)
    errors = {status: {"description": description} for status, description in ERROR_DESCRIPTIONS.items()}

    @app.post("/", responses={200: {"model": list[list[LabelScore]]}, **errors})
    async def text_classification(request: TextClassificationRequest) -> JSONResponse:
        """Hugging Face Inference API text classification: one list of {label, score} per input."""
        rows = await service.logits(checked_texts(*request.sentences(), service.limits))
        output = text_classification_output(service.loaded(), [row[TYPE_HEAD] for row in rows], request.parameters)
        return JSONResponse(output)

    @app.post("/predict", responses={200: {"model": list[LabelScore] | list[list[LabelScore]]}, **errors})
    async def predict(request: PredictRequest) -> JSONResponse:
        """Text Embeddings Inference's classification route: all labels, highest score first."""
        sentences, single = tei_sentences(request.inputs)
        texts = checked_texts(sentences, single, service.limits)
        if request.truncate is False:  # tokenizing up to a whole batch untruncated: off the event loop
            await asyncio.to_thread(service.check_untruncated, texts, single)
        rows = await service.logits(texts)
        parameters = TextClassificationParameters(function_to_apply="none" if request.raw_scores else None)
        results = text_classification_output(service.loaded(), [row[TYPE_HEAD] for row in rows], parameters)
        return JSONResponse(results[0] if single else results)

    @app.post("/classify", responses=errors)
    async def classify(request: ClassifyRequest) -> JSONResponse:
        """kosenttype-predict's records: {id, label, score, top_k (when top_k > 1), attributes (models with heads)}."""
        rows = await service.logits(checked_texts(*request.sentences(), service.limits))
        classifier = service.loaded()
        settings = EngineSettings(top_k=request.top_k)
        records = [
            classifier.prediction(
                index, {head: classifier.probabilities(values, head) for head, values in row.items()}, settings
            ).to_record(request.top_k > 1)
            for index, row in enumerate(rows)
        ]
        return JSONResponse(records)

    @app.get("/health", responses={503: {"description": "The model is still loading."}})
    @app.get("/", include_in_schema=False)  # TEI answers GET / as /health too; load balancers probe it
    async def health() -> JSONResponse:
        """200 once the model is loaded and requests are taken; 503 before (and while shutting down)."""
        service.loaded()
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> JSONResponse:
        """The model, its labels and attribute heads, backend, precision, batching limits and version."""
        return JSONResponse(service.description())

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition format."""
        batcher = service.batcher
        queued = (batcher.queued_items, batcher.queued_jobs) if batcher is not None else (0, 0)
        text = service.metrics.exposition(*queued, ready=service.ready)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound at once, so that a port in use is reported before a model is loaded for nothing."""
    try:
        return socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=2048
        )
    except socket.gaierror as error:
        raise KoSentTypeError(f"--host {host}: cannot resolve it ({error.strerror})") from error
    except OSError as error:
        raise KoSentTypeError(
            f"cannot listen on {host}:{port}: {error.strerror or one_line(error)} "
            "(is another server using it? choose another --port)"
        ) from error


def run_server(
    service: InferenceService,
    load: Callable[[], Classifier],
    *,
    host: str,
    port: int,
    report: Callable[[str], None],
    log_level: str = "warning",
    graceful_shutdown_s: float | None = None,
) -> int:
    """Serve until SIGTERM, SIGHUP or SIGINT, loading the model in the background (503 until it is ready). On the
    signal, uvicorn stops accepting connections and waits (at most `graceful_shutdown_s`) for every request it has;
    then the batcher finishes, and this returns 0. A model that fails to load stops the server and raises its error."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        create_app(service),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    server = uvicorn.Server(config)
    failures: list[BaseException] = []

    def load_in_background() -> None:
        try:
            classifier = load()
        except BaseException as error:  # reported by the main thread once the server has stopped
            failures.append(error)
            server.should_exit = True
            return
        if service.attach(classifier):
            report(
                f"ready: {service.model} on {classifier.device} in {classifier.precision} ({classifier.backend.name})"
            )

    host_name, bound_port = sock.getsockname()[:2]
    url = f"http://[{host_name}]:{bound_port}" if ":" in host_name else f"http://{host_name}:{bound_port}"
    report(f"listening on {url}; loading {service.model}")
    threading.Thread(target=load_in_background, name="kosenttype-loader", daemon=True).start()
    hangups: list[int] = []

    def drain_on_hangup(signum: int, frame: Any) -> None:
        """SIGHUP (a closed terminal or session) drains like SIGTERM: uvicorn itself handles only SIGINT and SIGTERM."""
        hangups.append(signum)
        server.handle_exit(signum, frame)

    previous_hangup = signal.signal(signal.SIGHUP, drain_on_hangup)
    stopped_by = ""
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt as interruption:  # uvicorn re-raises the signal it handled, after shutting down
        if not server.should_exit or failures:
            raise
        stopped_by = " by " + signal.Signals(getattr(interruption, "signum", signal.SIGINT)).name
    finally:
        signal.signal(signal.SIGHUP, previous_hangup)
        sock.close()
    if failures:
        raise failures[0]
    stopped_by = stopped_by or (" by SIGHUP" if hangups else "")
    report(f"stopped{stopped_by}: {service.metrics.received} requests received, {service.metrics.answered} answered")
    return EXIT_OK
