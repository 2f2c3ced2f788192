"""Classify large inputs quickly and in constant memory: files or streams of sentences in, one record per line out.

Lines that can't be classified get an output record with an `error` instead of stopping the run; the output file
appears only when complete (docs/predicting.md). Imports no torch or transformers before the backend is chosen, so
that `--backend onnxruntime` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kosenttype.atomic_output import check_writable_file, refuse_input_as_output
from kosenttype.command_line import (
    add_model_arguments,
    check_at_least,
    engine_settings,
    load_from_arguments,
    reading_options,
)
from kosenttype.engine import (
    CPU_BATCH_TOKENS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_LENGTH,
    limit_threads,
)
from kosenttype.errors import EXIT_OK, EXIT_SOME_FAILED, KoSentTypeError, run_command
from kosenttype.input_files import FILE_FORMATS, file_format, open_input_file
from kosenttype.readers import DEFAULT_MAX_LINE_BYTES, read_records
from kosenttype.records import Outcomes
from kosenttype.writers import OUTPUT_FORMATS, infer_output_format, make_writer, open_output

PROGRAM = "kosenttype-predict"


def check_numbers(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse counts that would make the run meaningless, in the option's own name."""
    ray_counts = ("num_workers", "threads_per_worker")
    check_at_least(args, ("batch_size", "max_length", "max_line_bytes", "top_k", "chunk_size", "threads", *ray_counts))
    check_at_least(args, ["max_batch_tokens"], minimum=0)
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add_model_arguments(parser)
    add(
        "--input",
        required=True,
        help="The input file, or - for standard input. With --engine ray also a folder, a glob or an s3:// / gs:// "
        "path or folder.",
    )
    add(
        "--output",
        default="-",
        help="The output file, or - for standard output (default). With --engine ray, a folder (ending with /) "
        "gets one shard per block of input records.",
    )
    add("--format", choices=FILE_FORMATS, help="Input format (default: from the extension).")
    add(
        "--output_format",
        choices=(*OUTPUT_FORMATS, "parquet"),
        help="Output format (default: csv for .csv, else JSON Lines; shards: from the folder's name, else parquet).",
    )
    add("--text_column", help="The field/column holding the sentence (default: sentence, text or 문장).")
    add("--id_column", default="id", help="The field/column whose value becomes the record id.")
    add(
        "--engine", choices=("local", "ray"), default="local", help="local (default), or ray: many workers or machines."
    )
    add(
        "--ray_address",
        help="--engine ray: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, else a local Ray instance).",
    )
    add("--num_workers", type=int, help="--engine ray: model workers (default: one per threads_per_worker CPUs).")
    add("--threads_per_worker", type=int, help="--engine ray: CPU threads of each worker (default: 1).")
    add("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="Sentences per forward pass, at most.")
    add(
        "--max_batch_tokens",
        type=int,
        help=f"Close a batch before its padded size passes this many tokens (default: {CPU_BATCH_TOKENS} on a CPU, "
        "no limit on a GPU; 0: no limit).",
    )
    add("--max_length", type=int, default=DEFAULT_MAX_LENGTH, help="Truncate sentences to this many tokens.")
    add(
        "--max_line_bytes",
        type=int,
        default=DEFAULT_MAX_LINE_BYTES,
        help="A longer input line becomes a too_long error record, without being read into memory.",
    )
    add("--top_k", type=int, default=1, help="Also write the N most probable labels with their scores.")
    add("--chunk_size", type=int, default=DEFAULT_CHUNK_SIZE, help="Sentences read, sorted and written at a time.")
    add("--threads", type=int, help="CPU threads (default: one per core). 1 is faster on a busy machine.")
    return parser


@contextmanager
def progress_bar() -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr with sentences/s, only when stderr is a terminal (never in logs or pipes)."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(unit=" sentences", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from kosenttype.ray_engine import run_ray_prediction  # the optional ray extra, imported only when asked for

        return run_ray_prediction(args)
    if args.output_format == "parquet":
        raise KoSentTypeError("--output_format parquet writes shards: use --engine ray with an output folder")
    input_format = file_format(args.input, args.format)
    output_format = infer_output_format(args.output, args.output_format)
    if args.output != "-":
        check_writable_file(Path(args.output), "--output")
        refuse_input_as_output(args.output, [args.input], "--output")
    if args.threads:
        limit_threads(args.threads, args.backend)
    with open_input_file(args.input) as source:  # before loading the model: a typo in a path should fail fast
        classifier = load_from_arguments(args)
        where = f"{classifier.device} in {classifier.precision} ({args.backend})"
        print(f"{PROGRAM}: {args.model} on {where}", file=sys.stderr)
        started = time.perf_counter()
        outcomes = Outcomes()
        records = read_records(source, input_format, name=args.input, **reading_options(args))
        with open_output(args.output) as destination, progress_bar() as progress:
            settings = engine_settings(args, progress)
            writer = make_writer(output_format, destination, args.top_k > 1, bool(classifier.attributes))
            for prediction in classifier.classify_records(records, settings):
                writer.write(prediction)
                outcomes.add(prediction)
    shown = "standard output" if args.output == "-" else args.output
    print(outcomes.summary_line(PROGRAM, time.perf_counter() - started, shown), file=sys.stderr)
    return EXIT_SOME_FAILED if outcomes.failures else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all lines classified, 1 some lines failed (see their `error`), 2 the run could not go on,
    128+N when stopped by signal N."""
    return run_command(PROGRAM, lambda: run(check_numbers(build_parser().parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
