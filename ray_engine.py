"""`kosenttype-predict --engine ray`: the same prediction spread over the workers of a Ray cluster, or over the
cores of this machine when no cluster is given.

    kosenttype-predict --engine ray --model DIR --input corpus/ --output labels.jsonl          # local Ray, one file
    kosenttype-predict --engine ray --ray_address auto --model ID --input s3://b/in/ --output s3://b/out/

The pipeline is Ray Data's: one read task per input file streams its records (the local engine's readers, each
record numbered by its file and position), a streaming repartition cuts them into blocks of `--chunk_size`
records (the local engine's chunks), a fixed pool of worker actors, each holding the model once
(`BlockClassifier`), classifies a block per call with `Classifier.classify_chunk`, the local engine's own
batching; then either the driver writes one output file in input order with the local engine's writers, or the
workers write one shard per block into an output folder. Records are therefore the local engine's, byte for
byte: same ids, labels, rounded scores and error records.

Order without holding the corpus: Ray Data is asked to deliver blocks in input order (`preserve_order`). A block
that finished early waits in Ray's object store (spilled to disk when that fills), never in the driver, which
holds one block at a time; the price is that one slow block holds back the writing of those after it, not their
classification. Each record carries (file index, position), which the driver checks to be strictly increasing,
so a block delivered twice or out of order would stop the run rather than corrupt the output. Shard outputs need
no order: each shard is named after its first record (`part-FILE-POSITION`), so sorted shard names are input
order, and a retried block rewrites its own shard instead of adding one.

Failures: a worker that dies is restarted by Ray and its block run again (Ray Data's actor pools use
max_restarts=-1, max_task_retries=-1); a node that dies takes its blocks with it and they are recomputed from
their inputs. A local Ray instance started here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from .atomic_output import atomic_binary_output, check_writable_file, refuse_input_as_output, staged_folder
from .engine import EngineSettings, heads_from_config, limit_threads, load_classifier
from .errors import EXIT_OK, EXIT_SOME_FAILED, KoSentTypeError, one_line
from .input_files import InputFile, expand_inputs, is_uri, read_input_file, uri_filesystem
from .model_location import read_model_config
from .records import InputRecord, LineError, Prediction
from .writers import infer_output_format, json_line, make_writer, open_output

LOCAL_ONLY_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Two switches Ray reads once, when it is imported, and only in this process (they are removed again after the
# import, so the Ray processes it starts keep their defaults):
IMPORT_SWITCHES = {
    # A local instance binds 127.0.0.1 only, where Ray on Linux would listen on every interface. Connecting to a
    # real cluster is unaffected: a driver there takes its address from its node's raylet.
    LOCAL_ONLY_VARIABLE: "0",
    # SIGTERM and Ctrl-C end a run with the command's one line, not with a C++ stack dump of this process.
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
}
IMPORT_SWITCHES = {name: value for name, value in IMPORT_SWITCHES.items() if name not in os.environ}
os.environ.update(IMPORT_SWITCHES)
try:
    import pyarrow as pa
    import ray
    from ray.data import ActorPoolStrategy, DataContext, Datasink, Datasource, ReadTask
    from ray.data.block import BlockAccessor, BlockMetadata
except ImportError as missing:  # the ray extra is optional; the local engine never imports this module
    raise KoSentTypeError(
        f"--engine ray needs the ray extra ({missing.name} is not installed): pip install 'kosenttype[ray]'"
    ) from missing
finally:
    for name in IMPORT_SWITCHES:
        os.environ.pop(name, None)

PROGRAM = "kosenttype-predict"
LOOPBACK = "127.0.0.1"
SHARD_FORMATS = ("parquet", "jsonl")
# Reading a file and writing a shard are light next to running the model: they ask Ray for a quarter of a CPU,
# so that they always fit beside a pool of workers that holds every whole CPU.
IO_TASK_CPUS = 0.25
ADDRESS_CHECK_SECONDS = 5.0

INPUT_SCHEMA = pa.schema(
    [
        ("file_index", pa.int32()),
        ("position", pa.int64()),
        ("id", pa.string()),  # JSON text of the id, which may be a number, a string or null
        ("text", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
    ]
)
PREDICTION_SCHEMA = pa.schema(
    [
        ("file_index", pa.int32()),
        ("position", pa.int64()),
        ("id", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("top_k", pa.string()),  # JSON [[label, score], …]: the exact floats, for the driver to rebuild
        ("attributes", pa.string()),  # JSON {axis: [label, score]}
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
    ]
)


# --- blocks: records and predictions as Arrow tables ----------------------------------------------------------


def records_block(file_index: int, first_position: int, records: list[InputRecord]) -> pa.Table:
    """A block of input records; `position` numbers the file's records from 1, in file order."""
    return pa.table(
        {
            "file_index": [file_index] * len(records),
            "position": range(first_position, first_position + len(records)),
            "id": [json.dumps(record.id) for record in records],
            "text": [record.text for record in records],
            "error_kind": [record.error.kind if record.error else None for record in records],
            "error_message": [record.error.message if record.error else None for record in records],
        },
        schema=INPUT_SCHEMA,
    )


def block_records(block: pa.Table) -> list[InputRecord]:
    columns = block.select(["id", "text", "error_kind", "error_message"]).to_pydict()
    return [
        InputRecord(json.loads(record_id), text, LineError(kind, message) if kind else None)
        for record_id, text, kind, message in zip(*columns.values(), strict=True)
    ]


def predictions_block(block: pa.Table, predictions: list[Prediction]) -> pa.Table:
    """The block's predictions, beside the record keys (file index, position, id) they came with."""
    return pa.table(
        {
            "file_index": block["file_index"],
            "position": block["position"],
            "id": block["id"],
            "label": [prediction.label for prediction in predictions],
            "score": [prediction.score for prediction in predictions],
            "top_k": [json.dumps(prediction.top_k) if prediction.top_k else None for prediction in predictions],
            "attributes": [json.dumps(each.attributes) if each.attributes else None for each in predictions],
            "error_kind": [prediction.error.kind if prediction.error else None for prediction in predictions],
            "error_message": [prediction.error.message if prediction.error else None for prediction in predictions],
        },
        schema=PREDICTION_SCHEMA,
    )


def block_predictions(block: pa.Table) -> Iterator[tuple[tuple[int, int], Prediction]]:
    """((file index, position), Prediction) for each row, the Prediction exactly as the worker made it."""
    columns = block.to_pydict()
    for file_index, position, record_id, label, score, top_k, attributes, kind, message in zip(
        *columns.values(), strict=True
    ):
        prediction = Prediction(
            json.loads(record_id),
            label,
            score,
            [tuple(pair) for pair in json.loads(top_k)] if top_k else [],
            {axis: tuple(pair) for axis, pair in json.loads(attributes).items()} if attributes else None,
            LineError(kind, message) if kind else None,
        )
        yield (file_index, position), prediction


# --- reading: one read task per input file --------------------------------------------------------------------


@dataclass(frozen=True)
class ReadOptions:
    text_column: str | None
    id_column: str
    max_line_bytes: int
    block_records: int


def read_blocks(file_index: int, input_file: InputFile, options: ReadOptions) -> Iterator[pa.Table]:
    """One input file's records as tables of `block_records` rows, so that no file is ever held as Python objects
    (Ray merges what a task yields up to its block size in bytes; the repartition after the read cuts blocks)."""
    records = read_input_file(
        input_file, text_column=options.text_column, id_column=options.id_column, max_line_bytes=options.max_line_bytes
    )
    position = 1
    while chunk := list(islice(records, options.block_records)):
        yield records_block(file_index, position, chunk)
        position += len(chunk)


class InputFilesDatasource(Datasource):
    """The input files as a Ray dataset: one read task per file, in the files' order."""

    def __init__(self, files: list[InputFile], options: ReadOptions) -> None:
        super().__init__()
        self.files = files
        self.options = options

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        return [
            ReadTask(
                lambda index=index, input_file=input_file: read_blocks(index, input_file, self.options),
                BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=[input_file.path]),
                schema=INPUT_SCHEMA,
            )
            for index, input_file in enumerate(self.files)
        ]


# --- the workers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    model: str
    backend: str
    device: str
    precision: str
    revision: str | None
    trust_remote_code: bool


class BlockClassifier:
    """The callable class of `Dataset.map_batches`: Ray builds one per worker, which loads the model once, with
    its thread count set before, and then classifies one block per call with the local engine's `classify_chunk`."""

    def __init__(self, model: ModelOptions, settings: EngineSettings, threads: int) -> None:
        limit_threads(threads, model.backend)
        self.classifier = load_classifier(
            model.model,
            backend=model.backend,
            device=model.device,
            precision=model.precision,
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
        )
        self.settings = settings

    def __call__(self, block: pa.Table) -> pa.Table:
        return predictions_block(block, self.classifier.classify_chunk(block_records(block), self.settings))


# --- outputs ---------------------------------------------------------------------------------------------------


@dataclass
class JobCounts:
    """What the job did, for the summary line and the exit status."""

    classified: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    first_result_at: float | None = None  # time.perf_counter() when the driver got its first block, if it did

    def add(self, prediction: Prediction) -> None:
        if prediction.error is None:
            self.classified += 1
        else:
            self.failures[prediction.error.kind] += 1

    def merge(self, other: JobCounts) -> None:
        self.classified += other.classified
        self.failures.update(other.failures)

    @property
    def total(self) -> int:
        return self.classified + sum(self.failures.values())


def is_folder_output(path: str) -> bool:
    """A path ending with / (or an existing folder) asks for shards; anything else for one file."""
    return path.endswith(("/", os.sep)) or (not is_uri(path) and os.path.isdir(path))


def shard_format(path: str, requested: str | None) -> str:
    """--output_format (parquet or jsonl), else the folder name's suffix (out.jsonl/), else Parquet."""
    if requested:
        if requested not in SHARD_FORMATS:
            raise KoSentTypeError(f"--output_format {requested}: an output folder takes parquet or jsonl shards")
        return requested
    suffix = Path(path.rstrip("/" + os.sep)).suffix.lower().lstrip(".")
    return "jsonl" if suffix in ("jsonl", "ndjson", "json") else "parquet"


def shard_record(prediction: Prediction, input_file: str, position: int, with_top_k: bool) -> dict[str, Any]:
    """The local engine's output record, followed by where it came from (file and record number in it)."""
    return {**prediction.to_record(with_top_k), "input_file": input_file, "input_record": position}


def shard_table(records: list[dict[str, Any]], with_top_k: bool, with_attributes: bool) -> pa.Table:
    """Shard records as a Parquet table with the CSV output's columns: the id as text (JSON for non-strings),
    top_k and attributes as JSON text, plus input_file and input_record; every shard has the same schema."""
    columns: list[tuple[str, pa.DataType]] = [("id", pa.string()), ("label", pa.string()), ("score", pa.float64())]
    columns += [("top_k", pa.string())] * with_top_k + [("attributes", pa.string())] * with_attributes
    columns += [("error", pa.string()), ("input_file", pa.string()), ("input_record", pa.int64())]
    values: dict[str, list[Any]] = {name: [] for name, _ in columns}
    for record in records:
        for name in values:
            value = record.get(name)
            if name == "id" and value is not None and not isinstance(value, str):
                value = json.dumps(value)
            elif name in ("top_k", "attributes") and value is not None:
                value = json.dumps(value, ensure_ascii=False)
            values[name].append(value)
    return pa.table(values, schema=pa.schema(columns))


@contextmanager
def shard_stream(folder: str, name: str) -> Iterator[io.RawIOBase]:
    """A shard file to write: on a local path beside its final name, renamed into place when complete; in
    object storage an object, which appears whole when the stream closes."""
    if not is_uri(folder):
        os.makedirs(folder, exist_ok=True)
        with atomic_binary_output(os.path.join(folder, name)) as stream:
            yield stream
        return
    filesystem, inner = uri_filesystem(folder.rstrip("/") + "/" + name)
    with filesystem.open_output_stream(inner) as stream:
        yield stream


class ShardSink(Datasink):
    """One shard per block, named part-FILE-POSITION after its first record, so that names sort in input order
    and a block that is run again rewrites its own shard. Each write returns its counts to the driver."""

    def __init__(self, folder: str, shard_format: str, files: list[str], with_top_k: bool, with_attributes: bool):
        self.folder = folder
        self.shard_format = shard_format
        self.files = files
        self.with_top_k = with_top_k
        self.with_attributes = with_attributes
        self.counts = JobCounts()

    def on_write_start(self, schema: Any = None) -> None:
        """The folder, created once by the driver where a filesystem has folders (file://, hdfs://); object stores
        just record an empty marker."""
        if is_uri(self.folder):
            filesystem, path = uri_filesystem(self.folder)
            filesystem.create_dir(path.rstrip("/"), recursive=True)

    def write(self, blocks: Iterable[Any], ctx: Any) -> JobCounts:
        counts = JobCounts()
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows:
                self.write_shard(table, counts)
        return counts

    def write_shard(self, table: pa.Table, counts: JobCounts) -> None:
        records = []
        for (file_index, position), prediction in block_predictions(table):
            records.append(shard_record(prediction, self.files[file_index], position, self.with_top_k))
            counts.add(prediction)
        first_file, first_position = table["file_index"][0].as_py(), table["position"][0].as_py()
        name = f"part-{first_file:06d}-{first_position:012d}.{self.shard_format}"
        with shard_stream(self.folder, name) as stream:
            if self.shard_format == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(shard_table(records, self.with_top_k, self.with_attributes), stream)
            else:
                stream.write("".join(json_line(record) for record in records).encode("utf-8"))

    def on_write_complete(self, write_result: Any) -> None:
        for counts in write_result.write_returns:
            self.counts.merge(counts)


def write_in_order(
    dataset: ray.data.Dataset, stream: TextIO, output_format: str, with_top_k: bool, with_attributes: bool
) -> JobCounts:
    """One output file (or standard output) in input order, through the local engine's writers."""
    counts = JobCounts()
    last_key = (-1, 0)
    writer = make_writer(output_format, stream, with_top_k, with_attributes)
    for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1):
        counts.first_result_at = counts.first_result_at or time.perf_counter()
        for key, prediction in block_predictions(block):
            if key <= last_key:
                raise KoSentTypeError(
                    f"records came back out of order (record {key} after {last_key}); no output was written"
                )
            last_key = key
            writer.write(prediction)
            counts.add(prediction)
    return counts


# --- connecting to Ray -----------------------------------------------------------------------------------------


def address_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of ray://HOST:PORT or HOST:PORT (or of RAY_ADDRESS for `auto`), to check before Ray tries."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address or address == "auto":
            return None
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, separator, port = host_port.rpartition(":")
    if not separator or not port.isdigit():
        raise KoSentTypeError(f"--ray_address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Refuse in seconds an address nothing answers on: Ray's own connect retries for minutes, deaf to signals."""
    endpoint = address_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=ADDRESS_CHECK_SECONDS).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or one_line(error))
        raise KoSentTypeError(
            f"cannot reach the Ray cluster at {address}: {reason}; "
            "is it running (ray start --head), and is that port open to this machine?"
        ) from error


def quiet_ray_logging() -> None:
    """Ray Data's console messages off: its session log (/tmp/ray/session_latest/logs/ray-data.log) keeps them,
    and a run reports in its own lines, with the one line of what stopped it."""
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.CRITICAL)


@contextmanager
def own_sigterm_handling() -> Iterator[None]:
    """Keep the command's SIGTERM handling (an exception that unwinds every `with`, see errors.run_command):
    `ray.init` replaces it with a bare sys.exit(15), which ends the run with status 15 and no line saying why."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def start_local_ray(num_cpus: int) -> None:
    """A private Ray instance on this machine: `num_cpus` logical CPUs, no dashboard, loopback only."""
    quiet_ray_logging()
    with own_sigterm_handling():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address=LOOPBACK,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    if ray.util.get_node_ip_address() != LOOPBACK:  # Ray was imported before this module could switch it
        ray.shutdown()
        raise KoSentTypeError(
            f"a local Ray instance would listen beyond {LOOPBACK}: import kosenttype.ray_engine before ray, "
            f"or set {LOCAL_ONLY_VARIABLE}=0"
        )


def connect_to_cluster(address: str) -> None:
    """Join a running cluster as its driver (from one of its nodes, or through Ray Client with ray://)."""
    quiet_ray_logging()
    try:
        with own_sigterm_handling():
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        message = f"cannot connect to the Ray cluster at {address}: {one_line(error)}"
        raise KoSentTypeError(message) from error


@contextmanager
def ray_session(address: str | None, local_cpus: int) -> Iterator[bool]:
    """Ray for the length of the block; yields whether it is this machine's own instance (started here or by the
    caller). An instance the caller already started is used as it is and left running."""
    if address:
        check_reachable(address)
    # Ray's C++ core logs to this terminal; at its default level that includes a warning every Ray Data job
    # triggers (constructor arguments in the object store). Errors that matter reach the run as exceptions.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if ray.is_initialized():
        yield not address
        return
    if address:
        connect_to_cluster(address)
    else:
        start_local_ray(local_cpus)
    try:
        yield not address
    finally:
        ray.shutdown()


# --- the job ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workers:
    count: int
    threads: int
    gpus: int  # per worker: 0 or 1

    def describe(self) -> str:
        unit = "GPU worker" if self.gpus else "worker"
        return f"{self.count} {unit}{'s' * (self.count != 1)} × {self.threads} thread{'s' * (self.threads != 1)}"


def plan_workers(requested: int | None, threads: int, device: str, resources: Mapping[str, float]) -> Workers:
    """How many workers, with how many threads and GPUs each, fit the Ray cluster's resources.

    GPUs are used when Ray sees some and --device isn't cpu: one GPU per worker, a worker per GPU by default.
    On CPUs a worker per `threads` CPUs by default, keeping a quarter of a CPU for reading and writing tasks.
    """
    cpus, gpus = resources.get("CPU", 0.0), int(resources.get("GPU", 0.0))
    use_gpus = gpus > 0 and device != "cpu"
    if device.startswith("cuda") and not use_gpus:
        raise KoSentTypeError(f"--device {device}: the Ray cluster has no GPUs (use --device cpu or auto)")
    if use_gpus:
        count = requested or gpus
        needed = f"{count} GPUs"
        fits = count <= gpus and count * threads + IO_TASK_CPUS <= cpus
    else:
        count = requested or max(1, int((cpus - IO_TASK_CPUS) // threads))
        needed = f"{count * threads + IO_TASK_CPUS:g} CPUs"
        fits = count * threads + IO_TASK_CPUS <= cpus
    if not fits:
        raise KoSentTypeError(
            f"{count} workers × {threads} threads need {needed} with reading and writing, but the Ray cluster has "
            f"{cpus:g} CPUs and {gpus} GPUs; lower --num_workers or --threads_per_worker"
        )
    return Workers(count, threads, 1 if use_gpus else 0)


def model_heads(model: str, revision: str | None) -> dict[str, list[str]]:
    """The model's heads from its config.json, read on the driver: a wrong --model fails before Ray starts, and
    the output's columns (attributes or not) are known before the first record."""
    config = read_model_config(model, revision)
    try:
        return heads_from_config(config)
    except (ValueError, KeyError, TypeError) as error:
        message = f"cannot load model {model}: its config.json is unreadable ({one_line(error)})"
        raise KoSentTypeError(message) from error


def ray_failure(error: BaseException) -> KoSentTypeError | None:
    """What stopped a Ray task, in one line: the KoSentTypeError a read or a worker raised (found through Ray's
    wrappers), or the last line of the error that kept the workers from loading the model."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KoSentTypeError):
            return KoSentTypeError(str(getattr(error, "cause", None) or error).strip().splitlines()[0])
        if isinstance(error, ray.exceptions.RayActorError) and error.actor_init_failed:
            cause = str(error).strip().splitlines()[-1].removeprefix(f"{KoSentTypeError.__module__}.")
            return KoSentTypeError(
                f"the Ray workers could not load the model: {cause.removeprefix('KoSentTypeError: ')}"
            )
        error = getattr(error, "cause", None) or error.__cause__
    return None


@contextmanager
def ray_errors_as_one_line() -> Iterator[None]:
    """A bad input or model found inside a Ray task stops the run with its own one-line message."""
    try:
        yield
    except Exception as error:
        found = ray_failure(error)
        if found is None:
            raise
        raise found from error


def configure_data_context(in_order: bool) -> None:
    context = DataContext.get_current()
    context.execution_options.preserve_order = in_order
    context.enable_progress_bars = sys.stderr.isatty()
    context.print_on_execution_start = False


def build_dataset(
    files: list[InputFile], read: ReadOptions, model: ModelOptions, settings: EngineSettings, workers: Workers
) -> ray.data.Dataset:
    """Read → classify on a fixed pool of workers. GPU workers get batches of exactly `chunk_size` records (Ray
    requires a batch size with GPUs); CPU workers get whole blocks, which are the local engine's chunks."""
    device = "cuda" if workers.gpus else "cpu"
    # A read task's blocks are merged up to Ray's block size in bytes (128 MiB), so blocks of `chunk_size` records
    # are cut afterwards, by a streaming repartition; one read task per file is asked for, or Ray would split them.
    source = InputFilesDatasource(files, read)
    records = ray.data.read_datasource(source, override_num_blocks=len(files), num_cpus=IO_TASK_CPUS)
    return records.repartition(target_num_rows_per_block=read.block_records).map_batches(
        BlockClassifier,
        fn_constructor_kwargs={
            "model": replace(model, device=device),
            "settings": settings,
            "threads": workers.threads,
        },
        batch_size=read.block_records if workers.gpus else None,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers.count),
        num_cpus=workers.threads,
        num_gpus=workers.gpus or None,
    )


def local_input_paths(files: list[InputFile]) -> list[str]:
    return [input_file.path for input_file in files if not is_uri(input_file.path)]


def check_output(output: str, files: list[InputFile], folder: bool) -> None:
    """Refuse before starting: an output that is an input, a missing or read-only folder, a non-empty folder."""
    if output == "-":
        return
    if is_uri(output):
        if not folder:
            raise KoSentTypeError(f"--output {output}: give object storage a folder (ending with /) for shards")
        if not folder_is_empty(output):
            raise KoSentTypeError(f"--output {output}: the folder is not empty; choose a new or empty folder")
        return
    refuse_input_as_output(output.rstrip("/" + os.sep) if folder else output, local_input_paths(files), "--output")
    if folder:
        if not folder_is_empty(output):
            raise KoSentTypeError(f"--output {output}: the folder is not empty; choose a new or empty folder")
    else:
        check_writable_file(Path(output), "--output")


def folder_is_empty(folder: str) -> bool:
    """No file under the folder (or prefix, in object storage), or no such folder yet."""
    if not is_uri(folder):
        return not os.path.isdir(folder) or not any(os.scandir(folder))
    from pyarrow import fs

    filesystem, path = uri_filesystem(folder)
    listing = filesystem.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    return not any(entry.is_file for entry in listing)


@dataclass
class RayJob:
    """Everything a run needs, checked before Ray starts."""

    files: list[InputFile]
    output: str
    folder_output: bool
    output_format: str
    read: ReadOptions
    model: ModelOptions
    settings: EngineSettings
    heads: dict[str, list[str]]
    address: str | None
    num_workers: int | None
    threads: int

    @classmethod
    def from_args(cls, args: Any) -> RayJob:
        if args.input == "-":
            raise KoSentTypeError("--engine ray reads files, folders or globs, not standard input; use a file")
        files = expand_inputs(args.input, args.format)
        folder = is_folder_output(args.output)
        if folder:
            output_format = shard_format(args.output, args.output_format)
        elif args.output_format not in (None, *("jsonl", "csv")):
            raise KoSentTypeError(f"--output_format {args.output_format} needs an output folder (end it with /)")
        else:
            output_format = infer_output_format(args.output, args.output_format)
        check_output(args.output, files, folder)
        return cls(
            files=files,
            output=args.output,
            folder_output=folder,
            output_format=output_format,
            read=ReadOptions(args.text_column, args.id_column, args.max_line_bytes, args.chunk_size),
            model=ModelOptions(
                str(args.model), args.backend, args.device, args.precision, args.revision, args.trust_remote_code
            ),
            settings=EngineSettings(
                args.batch_size, args.max_length, args.top_k, args.chunk_size, args.max_batch_tokens
            ),
            heads=model_heads(str(args.model), args.revision),
            address=args.ray_address or os.environ.get("RAY_ADDRESS"),  # set for a `ray job submit` entrypoint
            num_workers=args.num_workers,
            threads=args.threads_per_worker or 1,
        )

    @property
    def with_attributes(self) -> bool:
        return len(self.heads) > 1

    def local_cpus(self) -> int:
        """CPUs of a local instance: the workers' threads (one worker per core by default) plus one for I/O."""
        workers = self.num_workers or max(1, (os.cpu_count() or 1) // self.threads)
        return workers * self.threads + 1

    def single_output(self) -> AbstractContextManager[TextIO | None]:
        """The output file (or standard output) when one is asked for, opened before Ray starts (see the run)."""
        return nullcontext() if self.folder_output else open_output(self.output)

    def run(self, workers: Workers, own_machine: bool, stream: TextIO | None) -> JobCounts:
        with ray_errors_as_one_line():
            configure_data_context(in_order=not self.folder_output)
            dataset = build_dataset(self.files, self.read, self.model, self.settings, workers)
            if stream is not None:
                return write_in_order(
                    dataset, stream, self.output_format, self.settings.top_k > 1, self.with_attributes
                )
            if own_machine and not is_uri(self.output):  # a folder this machine's workers fill: whole or nothing
                with staged_folder(Path(self.output), replace=False) as staging:
                    return self.write_shards(dataset, str(staging))
            return self.write_shards(dataset, self.output)

    def write_shards(self, dataset: ray.data.Dataset, folder: str) -> JobCounts:
        sink = ShardSink(
            folder,
            self.output_format,
            [input_file.path for input_file in self.files],
            self.settings.top_k > 1,
            self.with_attributes,
        )
        dataset.write_datasink(sink, ray_remote_args={"num_cpus": IO_TASK_CPUS})
        return sink.counts


def summary_line(counts: JobCounts, started: float, workers: Workers, destination: str) -> str:
    """The run's report; with a single output also when the first records came back, the job's fixed cost
    (starting Ray and the workers, loading the model) plus one block's work."""
    seconds = time.perf_counter() - started
    failed = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.failures.items()))
    failed_part = f", {sum(counts.failures.values())} failed ({failed})" if counts.failures else ""
    rate = counts.classified / seconds if seconds > 0 else 0.0
    first = f"; first result after {counts.first_result_at - started:.1f} s" if counts.first_result_at else ""
    return (
        f"{PROGRAM}: {counts.total} records: {counts.classified} classified{failed_part} in {seconds:.1f} s "
        f"({rate:.1f} sentences/s{first}) on Ray, {workers.describe()} -> {destination}"
    )


def run_ray_prediction(args: Any) -> int:
    """`kosenttype-predict --engine ray`: predict's options plus ray_address, num_workers, threads_per_worker.

    Exit status as the local engine's: 0 every record classified, 1 some failed (see their `error`)."""
    started = time.perf_counter()
    job = RayJob.from_args(args)
    # Ray prints its workers' errors with print(): to stderr with them, since the output may be standard output.
    with (
        job.single_output() as stream,
        redirect_stdout(sys.stderr),
        ray_session(job.address, job.local_cpus()) as own_machine,
    ):
        workers = plan_workers(job.num_workers, job.threads, job.model.device, ray.cluster_resources())
        print(
            f"{PROGRAM}: {job.model.model} on Ray ({job.model.backend}, {workers.describe()}): "
            f"{len(job.files)} input file{'s' * (len(job.files) != 1)}",
            file=sys.stderr,
        )
        counts = job.run(workers, own_machine, stream)
    destination = "standard output" if job.output == "-" else job.output
    print(summary_line(counts, started, workers, destination), file=sys.stderr)
    return EXIT_SOME_FAILED if counts.failures else EXIT_OK
