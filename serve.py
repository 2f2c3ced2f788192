"""Serve a classifier over HTTP to the clients Hugging Face users already have, batching concurrent requests.

    kosenttype-serve --model DIR_OR_HUB_ID [--host 127.0.0.1] [--port 8080]

Routes: POST / (Inference API), POST /predict (TEI), POST /classify (predict's records), GET /health, /info, /metrics,
/docs. SIGTERM, SIGHUP or Ctrl-C answers every accepted request and exits 0; a startup error is one line, exit 2. See
docs/serving.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from kosenttype.command_line import add_model_arguments, check_at_least, load_from_arguments
from kosenttype.errors import KoSentTypeError, run_command
from kosenttype.serving_limits import CPU_SERVER_BATCH_TOKENS, ServingLimits

PROGRAM = "kosenttype-serve"
AT_LEAST_ONE = ("max_batch_size", "max_queue", "max_client_batch_size", "max_input_length", "max_length")
DEFAULTS = ServingLimits()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add_model_arguments(parser)
    add("--host", default="127.0.0.1", help="The address to listen on (default: 127.0.0.1, this machine only).")
    add("--port", type=int, default=8080, help="The port to listen on (default: 8080; 0 picks a free one).")
    add(
        "--max_batch_size",
        type=int,
        default=DEFAULTS.max_batch_size,
        help="Sentences per model call, at most (1: no batching).",
    )
    add(
        "--max_batch_tokens",
        type=int,
        help="Split a model call into forward passes of at most this many padded tokens (default: "
        f"{CPU_SERVER_BATCH_TOKENS} on a CPU, no limit on a GPU; 0: no limit).",
    )
    add(
        "--max_wait_ms",
        type=float,
        default=DEFAULTS.max_wait_ms,
        help="How long the oldest waiting request may wait for others to fill a batch "
        f"(default: {DEFAULTS.max_wait_ms:g} ms).",
    )
    add(
        "--max_queue",
        type=int,
        default=DEFAULTS.max_queue,
        help="Sentences waiting for a batch, at most; beyond, requests get 429 with Retry-After.",
    )
    add(
        "--max_client_batch_size",
        type=int,
        default=DEFAULTS.max_client_batch_size,
        help="Sentences in one request, at most (else 413).",
    )
    add(
        "--max_input_length",
        type=int,
        default=DEFAULTS.max_input_length,
        help="Characters in one sentence, at most (else 413).",
    )
    add("--max_length", type=int, default=DEFAULTS.max_length, help="Truncate sentences to this many tokens.")
    add(
        "--max_body_bytes",
        type=int,
        default=DEFAULTS.max_body_bytes,
        help="Bytes in one request body, at most (else 413).",
    )
    add(
        "--graceful_shutdown_s",
        type=float,
        default=60.0,
        help="On SIGTERM or SIGHUP, how long to wait for accepted requests before closing anyway (default: 60 s).",
    )
    add(
        "--log_level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="warning",
        help="uvicorn's log level (info logs every request).",
    )
    return parser


def check_numbers(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse limits that would make the server refuse everything or never answer, in the option's own name."""
    check_at_least(args, AT_LEAST_ONE)
    check_at_least(args, ["max_batch_tokens"], minimum=0)
    if not 0 <= args.port <= 65535:
        raise KoSentTypeError(f"--port must be between 0 and 65535, got {args.port}")
    if not 0 <= args.max_wait_ms <= 10_000:
        raise KoSentTypeError(f"--max_wait_ms must be between 0 and 10000, got {args.max_wait_ms}")
    if args.max_queue < args.max_client_batch_size:
        raise KoSentTypeError(
            f"--max_queue ({args.max_queue}) must be at least --max_client_batch_size "
            f"({args.max_client_batch_size}), or the largest allowed request could never be queued"
        )
    if args.max_body_bytes < 64:
        raise KoSentTypeError(f"--max_body_bytes must be at least 64, got {args.max_body_bytes}")
    if args.graceful_shutdown_s <= 0:
        raise KoSentTypeError(f"--graceful_shutdown_s must be positive, got {args.graceful_shutdown_s}")
    return args


def run(args: argparse.Namespace) -> int:
    try:
        from kosenttype.server_app import InferenceService, ServerMetrics, run_server
    except ImportError as error:
        raise KoSentTypeError(
            f"{PROGRAM} needs the serve extra ({error.name} is missing): pip install 'kosenttype[serve]'"
        ) from error
    limits = ServingLimits(**{limit.name: getattr(args, limit.name) for limit in fields(ServingLimits)})
    service = InferenceService(args.model, args.revision, limits, ServerMetrics())
    return run_server(
        service,
        lambda: load_from_arguments(args),
        host=args.host,
        port=args.port,
        report=lambda line: print(f"{PROGRAM}: {line}", file=sys.stderr, flush=True),
        log_level=args.log_level,
        graceful_shutdown_s=args.graceful_shutdown_s,
    )


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 stopped by SIGTERM/SIGHUP/SIGINT after answering every accepted request; 2 could not start."""
    return run_command(PROGRAM, lambda: run(check_numbers(build_parser().parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
