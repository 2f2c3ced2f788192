"""`kosenttype-predict --engine ray`: the local engine's prediction spread over the workers of a Ray cluster (or the
cores of this machine): one read task per input file, blocks of `--chunk_size` records, a pool of model workers
running `Classifier.classify_chunk`, then one output file in input order or one shard per block (docs/ray.md)."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from .atomic_output import atomic_binary_output, check_writable_file, refuse_input_as_output, staged_folder
from .command_line import engine_settings, model_options, reading_options
from .engine import EngineSettings, heads_from_config, limit_threads, load_classifier
from .errors import EXIT_OK, EXIT_SOME_FAILED, KoSentTypeError, one_line
from .input_files import InputFile, expand_inputs, is_uri, read_input_file, uri_filesystem
from .model_location import read_model_config
from .records import InputRecord, Outcomes, Prediction, utf8_safe
from .writers import flat_record, infer_output_format, json_line, make_writer, open_output, output_columns

LOCAL_ONLY_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray reads these once, when imported, in this process only (they are removed again afterwards, so the processes it
# starts keep their defaults): a local instance binds 127.0.0.1 only, not every interface; SIGTERM and Ctrl-C end a
# run with the command's one line, not a C++ stack dump.
IMPORT_SWITCHES = {
    name: value
    for name, value in {LOCAL_ONLY_VARIABLE: "0", "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}.items()
    if name not in os.environ
}
os.environ.update(IMPORT_SWITCHES)
try:
    import pyarrow as pa
    import ray
    from ray.data import ActorPoolStrategy, DataContext, Datasink
    from ray.data.block import BlockAccessor
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
# Reading a file and writing a shard ask Ray for a quarter of a CPU, so that they fit beside workers holding every CPU.
IO_TASK_CPUS = 0.25
ADDRESS_CHECK_SECONDS = 5.0
# Input and prediction blocks: each record's key (file index, position from 1 in the file) and the record itself,
# pickled, so that ids of every JSON type, errors and the exact score floats travel unchanged.
BLOCK_SCHEMA = pa.schema([("file_index", pa.int32()), ("position", pa.int64()), ("record", pa.binary())])


def records_block(file_index: int, first_position: int, records: list[InputRecord]) -> pa.Table:
    positions = range(first_position, first_position + len(records))
    columns = [[file_index] * len(records), positions, [pickle.dumps(record) for record in records]]
    return pa.table(columns, schema=BLOCK_SCHEMA)


def block_records(block: pa.Table) -> list[InputRecord]:
    return [pickle.loads(record) for record in block["record"].to_pylist()]


def predictions_block(block: pa.Table, predictions: list[Prediction]) -> pa.Table:
    """The block's predictions under the keys of the records they came from."""
    return block.set_column(2, "record", pa.array([pickle.dumps(each) for each in predictions], pa.binary()))


def block_predictions(block: pa.Table) -> Iterator[tuple[tuple[int, int], Prediction]]:
    columns = block.to_pydict().values()
    for file_index, position, record in zip(*columns, strict=True):
        yield (file_index, position), pickle.loads(record)


def read_blocks(
    files: list[InputFile], reading: dict[str, Any], chunk_size: int, batch: pa.Table
) -> Iterator[pa.Table]:
    """The records of the batch's one input file as tables of `chunk_size` rows, never the whole file in memory."""
    file_index = batch["file_index"][0].as_py()
    records = read_input_file(files[file_index], **reading)
    position = 1
    while chunk := list(islice(records, chunk_size)):
        yield records_block(file_index, position, chunk)
        position += len(chunk)


class BlockClassifier:
    """`map_batches`' callable class: one per worker, loading the model once, classifying a block per call."""

    def __init__(self, model: str, loading: dict[str, Any], settings: EngineSettings, threads: int) -> None:
        limit_threads(threads, loading["backend"])
        self.classifier = load_classifier(model, **loading)
        self.settings = settings

    def __call__(self, block: pa.Table) -> pa.Table:
        return predictions_block(block, self.classifier.classify_chunk(block_records(block), self.settings))


@dataclass
class JobCounts(Outcomes):
    first_result_at: float | None = None  # time.perf_counter() when the driver got its first block, if it did


def is_folder_output(path: str) -> bool:
    """A path ending with / (or an existing folder) asks for shards; anything else for one file."""
    return path.endswith(("/", os.sep)) or (not is_uri(path) and os.path.isdir(path))


def shard_format(path: str, requested: str | None) -> str:
    """--output_format (parquet or jsonl), else the folder name's suffix (out.jsonl/), else Parquet."""
    if requested and requested not in SHARD_FORMATS:
        raise KoSentTypeError(f"--output_format {requested}: an output folder takes parquet or jsonl shards")
    suffix = Path(path.rstrip("/" + os.sep)).suffix.lower().lstrip(".")
    return requested or ("jsonl" if suffix in ("jsonl", "ndjson", "json") else "parquet")


def shard_table(rows: list[dict[str, Any]], with_top_k: bool, with_attributes: bool) -> pa.Table:
    """Rows of `flat_record` plus their origin, as the same typed columns in every shard (ids as JSON text)."""
    names = [*output_columns(with_top_k, with_attributes), "input_file", "input_record"]
    values = {name: [row.get(name) for row in rows] for name in names}
    values["id"] = [value if value is None or isinstance(value, str) else json.dumps(value) for value in values["id"]]
    values["input_file"] = [utf8_safe(path) for path in values["input_file"]]
    types = {"score": pa.float64(), "input_record": pa.int64()}
    return pa.table(values, schema=pa.schema([(name, types.get(name, pa.string())) for name in values]))


@contextmanager
def shard_stream(folder: str, name: str) -> Iterator[io.RawIOBase]:
    """A local shard is written beside its final name and renamed into place; an object appears whole on close."""
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
        self.folder, self.shard_format, self.files = folder, shard_format, files
        self.with_top_k, self.with_attributes = with_top_k, with_attributes
        self.counts = JobCounts()

    def on_write_start(self, schema: Any = None) -> None:
        """The folder, created once where a filesystem has folders (file://, hdfs://); object stores ignore it."""
        if is_uri(self.folder):
            filesystem, path = uri_filesystem(self.folder)
            filesystem.create_dir(path.rstrip("/"), recursive=True)

    def write(self, blocks: Iterable[Any], ctx: Any) -> JobCounts:
        counts = JobCounts()
        for table in (BlockAccessor.for_block(block).to_arrow() for block in blocks):
            if not table.num_rows:
                continue
            rows = []
            row = flat_record if self.shard_format == "parquet" else Prediction.to_record
            for (file_index, position), prediction in block_predictions(table):
                origin = {"input_file": self.files[file_index], "input_record": position}
                rows.append({**row(prediction, self.with_top_k), **origin})
                counts.add(prediction)
            name = f"part-{table['file_index'][0].as_py():06d}-{table['position'][0].as_py():012d}.{self.shard_format}"
            with shard_stream(self.folder, name) as stream:
                if self.shard_format == "parquet":
                    import pyarrow.parquet as pq

                    pq.write_table(shard_table(rows, self.with_top_k, self.with_attributes), stream)
                else:
                    stream.write("".join(json_line(row) for row in rows).encode("utf-8"))
        return counts

    def on_write_complete(self, write_result: Any) -> None:
        for counts in write_result.write_returns:
            self.counts.classified += counts.classified
            self.counts.failures.update(counts.failures)


def write_in_order(
    dataset: ray.data.Dataset, stream: TextIO, output_format: str, with_top_k: bool, with_attributes: bool
) -> JobCounts:
    """One output file (or standard output) in input order, through the local engine's writers; a record key that
    does not increase (a block delivered twice or out of order) stops the run rather than corrupt the output."""
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


def check_reachable(address: str) -> None:
    """Refuse in seconds an address nothing answers on: Ray's own connect retries for minutes, deaf to signals."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address or address == "auto":
            return
    host, separator, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not separator or not port.isdigit():
        raise KoSentTypeError(f"--ray_address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_CHECK_SECONDS).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or one_line(error))
        raise KoSentTypeError(
            f"cannot reach the Ray cluster at {address}: {reason}; "
            "is it running (ray start --head), and is that port open to this machine?"
        ) from error


def init_ray(**options: Any) -> None:
    """`ray.init` with Ray Data's console messages off (its session log keeps them) and the command's SIGTERM
    handling kept (see errors.run_command): Ray replaces it with a bare sys.exit(15) that says nothing."""
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.CRITICAL)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(logging_level=logging.ERROR, log_to_driver=False, **options)
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def start_local_ray(num_cpus: int) -> None:
    """A private Ray instance on this machine: `num_cpus` logical CPUs, no dashboard, loopback only."""
    init_ray(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK)
    if ray.util.get_node_ip_address() != LOOPBACK:  # Ray was imported before this module could switch it
        ray.shutdown()
        raise KoSentTypeError(
            f"a local Ray instance would listen beyond {LOOPBACK}: import kosenttype.ray_engine before ray, "
            f"or set {LOCAL_ONLY_VARIABLE}=0"
        )


@contextmanager
def ray_session(address: str | None, local_cpus: int) -> Iterator[bool]:
    """Ray for the length of the block (the caller's instance is left running); yields whether it is this machine."""
    if address:
        check_reachable(address)
    # Ray's C++ core would log to this terminal, at its default level a warning every Ray Data job triggers.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    if ray.is_initialized():
        yield not address
        return
    if not address:
        start_local_ray(local_cpus)
    else:
        try:
            init_ray(address=address)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise KoSentTypeError(f"cannot connect to the Ray cluster at {address}: {one_line(error)}") from error
    try:
        yield not address
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Workers:
    count: int
    threads: int
    gpus: int  # per worker: 0 or 1

    def describe(self) -> str:
        unit = "GPU worker" if self.gpus else "worker"
        return f"{self.count} {unit}{'s' * (self.count != 1)} × {self.threads} thread{'s' * (self.threads != 1)}"


def plan_workers(requested: int | None, threads: int, device: str, resources: Mapping[str, float]) -> Workers:
    """Workers that fit the cluster: with GPUs (when Ray sees some and --device isn't cpu) one GPU each, a worker per
    GPU by default; else a worker per `threads` CPUs. A quarter of a CPU stays for reading and writing tasks."""
    cpus, gpus = resources.get("CPU", 0.0), int(resources.get("GPU", 0.0))
    use_gpus = gpus > 0 and device != "cpu"
    if device.startswith("cuda") and not use_gpus:
        raise KoSentTypeError(f"--device {device}: the Ray cluster has no GPUs (use --device cpu or auto)")
    count = requested or (gpus if use_gpus else max(1, int((cpus - IO_TASK_CPUS) // threads)))
    needed_cpus = count * threads + IO_TASK_CPUS
    if needed_cpus > cpus or (use_gpus and count > gpus):
        needed = f"{count} GPUs" if use_gpus else f"{needed_cpus:g} CPUs"
        raise KoSentTypeError(
            f"{count} workers × {threads} threads need {needed} with reading and writing, but the Ray cluster has "
            f"{cpus:g} CPUs and {gpus} GPUs; lower --num_workers or --threads_per_worker"
        )
    return Workers(count, threads, int(use_gpus))


def model_heads(model: str, revision: str | None) -> dict[str, list[str]]:
    """The heads, read on the driver: a wrong --model fails before Ray starts, and the output's columns are known."""
    try:
        return heads_from_config(read_model_config(model, revision))
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


def folder_is_empty(folder: str) -> bool:
    """No file under the folder (or prefix, in object storage), or no such folder yet."""
    if not is_uri(folder):
        return not os.path.isdir(folder) or not any(os.scandir(folder))
    from pyarrow import fs

    filesystem, path = uri_filesystem(folder)
    listing = filesystem.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    return not any(entry.is_file for entry in listing)


def check_output(output: str, files: list[InputFile], folder: bool) -> None:
    """Refuse before starting: an output that is an input, a missing or read-only folder, a non-empty folder."""
    if output == "-":
        return
    if is_uri(output) and not folder:
        raise KoSentTypeError(f"--output {output}: give object storage a folder (ending with /) for shards")
    if not is_uri(output):
        local_inputs = [input_file.path for input_file in files if not is_uri(input_file.path)]
        refuse_input_as_output(output.rstrip("/" + os.sep) if folder else output, local_inputs, "--output")
    if folder and not folder_is_empty(output):
        raise KoSentTypeError(f"--output {output}: the folder is not empty; choose a new or empty folder")
    if not folder:
        check_writable_file(Path(output), "--output")


@dataclass
class RayJob:
    """Everything a run needs, checked before Ray starts."""

    args: Any
    files: list[InputFile]
    folder_output: bool
    output_format: str
    settings: EngineSettings
    with_attributes: bool

    @classmethod
    def from_args(cls, args: Any) -> RayJob:
        if args.input == "-":
            raise KoSentTypeError("--engine ray reads files, folders or globs, not standard input; use a file")
        files = expand_inputs(args.input, args.format)
        folder = is_folder_output(args.output)
        if folder:
            output_format = shard_format(args.output, args.output_format)
        elif args.output_format not in (None, "jsonl", "csv"):
            raise KoSentTypeError(f"--output_format {args.output_format} needs an output folder (end it with /)")
        else:
            output_format = infer_output_format(args.output, args.output_format)
        check_output(args.output, files, folder)
        with_attributes = len(model_heads(str(args.model), args.revision)) > 1
        return cls(args, files, folder, output_format, engine_settings(args), with_attributes)

    def build_dataset(self, workers: Workers) -> ray.data.Dataset:
        """Read (a task per file), cut into blocks of `chunk_size` records (a task's blocks are merged up to Ray's
        block size in bytes), classify on a fixed pool of workers: whole blocks, or exactly `chunk_size` records
        on GPUs (Ray requires a batch size with GPUs)."""
        args, chunk_size = self.args, self.settings.chunk_size
        context = DataContext.get_current()
        context.execution_options.preserve_order = not self.folder_output
        context.enable_progress_bars = sys.stderr.isatty()
        context.print_on_execution_start = False
        indices = [{"file_index": index} for index in range(len(self.files))]
        records = ray.data.from_items(indices, override_num_blocks=len(self.files)).map_batches(
            partial(read_blocks, self.files, reading_options(args), chunk_size),
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=IO_TASK_CPUS,
        )
        loading = model_options(args) | {"device": "cuda" if workers.gpus else "cpu"}
        return records.repartition(target_num_rows_per_block=chunk_size).map_batches(
            BlockClassifier,
            fn_constructor_args=(str(args.model), loading, self.settings, workers.threads),
            batch_size=chunk_size if workers.gpus else None,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=workers.count),
            num_cpus=workers.threads,
            num_gpus=workers.gpus or None,
        )

    def run(self, workers: Workers, own_machine: bool, stream: TextIO | None) -> JobCounts:
        """The job; a KoSentTypeError raised inside a Ray task stops it with its own one line."""
        try:
            dataset = self.build_dataset(workers)
            with_top_k = self.settings.top_k > 1
            if stream is not None:
                return write_in_order(dataset, stream, self.output_format, with_top_k, self.with_attributes)
            files = [input_file.path for input_file in self.files]
            output = self.args.output
            # a folder this machine's workers fill is staged: whole or nothing
            staged = staged_folder(Path(output), replace=False) if own_machine and not is_uri(output) else None
            with staged or nullcontext(output) as folder:
                sink = ShardSink(str(folder), self.output_format, files, with_top_k, self.with_attributes)
                dataset.write_datasink(sink, ray_remote_args={"num_cpus": IO_TASK_CPUS})
            return sink.counts
        except Exception as error:
            found = ray_failure(error)
            if found is None:
                raise
            raise found from error


def run_ray_prediction(args: Any) -> int:
    """`kosenttype-predict --engine ray`; exit status as the local engine's (0 all classified, 1 some failed)."""
    started = time.perf_counter()
    job = RayJob.from_args(args)
    threads = args.threads_per_worker or 1
    # a local instance's CPUs: the workers' threads (one worker per core by default) plus one for I/O
    local_cpus = (args.num_workers or max(1, (os.cpu_count() or 1) // threads)) * threads + 1
    address = args.ray_address or os.environ.get("RAY_ADDRESS")  # set for a `ray job submit` entrypoint
    # The output file is opened before Ray starts; Ray prints its workers' errors with print(): to stderr with them.
    with (
        nullcontext() if job.folder_output else open_output(args.output) as stream,
        redirect_stdout(sys.stderr),
        ray_session(address, local_cpus) as own_machine,
    ):
        workers = plan_workers(args.num_workers, threads, args.device, ray.cluster_resources())
        print(
            f"{PROGRAM}: {args.model} on Ray ({args.backend}, {workers.describe()}): "
            f"{len(job.files)} input file{'s' * (len(job.files) != 1)}",
            file=sys.stderr,
        )
        counts = job.run(workers, own_machine, stream)
    destination = "standard output" if args.output == "-" else args.output
    first = f"; first result after {counts.first_result_at - started:.1f} s" if counts.first_result_at else ""
    seconds = time.perf_counter() - started
    print(counts.summary_line(PROGRAM, seconds, destination, first, f" on Ray, {workers.describe()}"), file=sys.stderr)
    return EXIT_SOME_FAILED if counts.failures else EXIT_OK
