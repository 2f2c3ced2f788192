"""Export a kosenttype model to ONNX for onnxruntime, Optimum and Transformers.js, checked against torch.

    kosenttype-export-onnx --model DIR_OR_HUB_ID [--output-dir OUT] [--quantize {none,int8}] [--opset N]

Writes onnx/model.onnx (fp32) and, by default, onnx/model_quantized.onnx (int8) into the model folder, or into OUT
with the files a runtime needs beside them (config.json, the tokenizer's). The fp32 graph is compared with torch
before anything appears: a failed check, an error or a signal leaves nothing behind (docs/onnx.md).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from kosenttype.atomic_output import refuse_input_as_output, staged_folder
from kosenttype.errors import KoSentTypeError, run_command
from kosenttype.model_location import local_folder
from kosenttype.onnx_backend import ONNX_FOLDER, hub_snapshot
from kosenttype.onnx_export import QUANTIZE_CHOICES, copy_runtime_files, export_onnx

PROGRAM = "kosenttype-export-onnx"
report = partial(print, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--model", required=True, help="A saved classifier folder or a Hub model id.")
    add(
        "--output-dir",
        help="Write OUT/onnx/ and the runtime files into this new folder (default: add onnx/ to the model folder).",
    )
    add("--quantize", choices=QUANTIZE_CHOICES, default="int8", help="Also write onnx/model_quantized.onnx (int8).")
    add("--opset", type=int, help="The ONNX opset to target (default: the exporter's recommended one).")
    add("--overwrite", action="store_true", help="Replace an existing onnx/ folder (or OUT), once all else worked.")
    add("--revision", help="The Hub revision (branch, tag or commit).")
    add(
        "--trust-remote-code",
        action="store_true",
        help="Run Python code shipped in the model folder (never needed for kosenttype models once installed).",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    location = local_folder(args.model)
    options = {
        "quantize": args.quantize,
        "opset": args.opset,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "report": report,
    }
    if args.output_dir is None:
        if not isinstance(location, Path):
            raise KoSentTypeError(f"--model {args.model} is a Hub id: give --output-dir to write the ONNX files to")
        with staged_folder(location / ONNX_FOLDER, replace=args.overwrite) as staging:
            files = export_onnx(location, staging, **options)
        written = location / ONNX_FOLDER
    else:
        written = Path(args.output_dir)
        if isinstance(location, Path):
            refuse_input_as_output(written, [location], "--output-dir")
        with staged_folder(written, replace=args.overwrite) as staging:
            source = location if isinstance(location, Path) else hub_snapshot(location, args.revision)
            copied = copy_runtime_files(source, staging)
            files = export_onnx(args.model, staging / ONNX_FOLDER, **options)
        report(f"copied beside it: {', '.join(copied)}")
    report(f"wrote {written}: {', '.join(f'{ONNX_FOLDER}/{path.name}' for path in files)}")
    runnable = written.parent if args.output_dir is None else written
    report(f"run it: kosenttype-predict --backend onnxruntime --model {runnable} --input sentences.txt")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 written and verified, 2 nothing written (bad arguments, untraceable model, failed check)."""
    return run_command(PROGRAM, lambda: run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
