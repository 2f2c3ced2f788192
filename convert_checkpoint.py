"""Turn a training run's `best.pt` (encoder + mean pooling + dropout + linear head) into a Hub-ready model folder.

Nothing is written until every tensor is placed and checked and a fresh process has proven that the saved folder
predicts what the checkpoint predicts. Reference: docs/converting.md.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser

from kosenttype import run_side_files as side_files
from kosenttype.atomic_output import refuse_input_as_output, staged_folder
from kosenttype.checkpoint_architecture import build_config, named_backbone, resolve_architecture, usable_max_length
from kosenttype.checkpoint_loading import read_checkpoint
from kosenttype.command_line import option
from kosenttype.errors import KoSentTypeError, run_command
from kosenttype.folder_verification import VERIFICATION_SENTENCES, verify_saved_folder
from kosenttype.hub_publishing import push_folder
from kosenttype.hub_tokenizer import save_tokenizer_for_hub
from kosenttype.model_card import write_model_card
from kosenttype.weight_checks import check_tensors_are_sound, check_tokenizer_fits
from kosenttype.weight_mapping import build_model, find_source_layout

PROGRAM = "kosenttype-convert"
report = functools.partial(print, flush=True)


@dataclass
class ConversionArguments:
    checkpoint: str = option("The training run's checkpoint (torch.save), e.g. RUN/best.pt.", MISSING)
    output_dir: str = option("The model folder to create; must not exist unless --overwrite.", MISSING)
    tokenizer: str | None = option("Tokenizer folder; RUN/tokenizer when not given.", None)
    label_mapping: str | None = option("Label mapping JSON; RUN/label_mapping.json when not given.", None)
    metrics: str | None = option("Metrics JSON for the model card; RUN/best_metrics.json when not given.", None)
    export_config: str | None = option("Backbone, max length, pooling; RUN/hf_export_config.json if not given.", None)
    backbone: str | None = option("Hub id or folder whose config defines the encoder (a kosenttype model's too).", None)
    onnx: bool = option("Also write onnx/model.onnx, checked against torch, for onnxruntime (kosenttype[onnx]).", False)
    onnx_quantize: Literal["none", "int8"] = option("With --onnx: int8 also writes onnx/model_quantized.onnx.", "int8")
    push_to_hub: str | None = option("Publish OUT to this Hub repository (created if needed).", None, metavar="REPO_ID")
    private: bool = option("Create the Hub repository as private.", False)
    commit_message: str = option(
        "Commit message of the upload.", "Upload KoSentType classifier converted from a training checkpoint"
    )
    overwrite: bool = option("Replace an existing OUT (only once all else worked).", False)
    trust_checkpoint: bool = option("Unpickle any object in the checkpoint (runs its code): trusted files only.", False)
    license: str = option("License in the model card's metadata.", "apache-2.0")
    verbose: bool = option("List every tensor's source and target key.", False)


def convert(args: ConversionArguments) -> Path:
    """The whole conversion: OUT appears complete and verified, or (on any error or signal) not at all. Every input
    is read and checked, and the model built in memory, before anything is written."""
    files = side_files.resolve_run_files(args.checkpoint, vars(args))
    output_dir = Path(args.output_dir)
    refuse_input_as_output(output_dir, files.inputs(), "--output-dir")
    if (output_dir.exists() or output_dir.is_symlink()) and not args.overwrite:
        raise KoSentTypeError(f"{output_dir}: already exists (pass --overwrite to replace it)")
    if args.onnx:  # the optional onnx extra is checked before any work
        try:
            from kosenttype.onnx_backend import ONNX_FOLDER
            from kosenttype.onnx_export import export_onnx
        except ImportError as error:
            missing = f"--onnx needs the onnx extra ({error.name} is missing): pip install 'kosenttype[onnx]'"
            raise KoSentTypeError(missing) from None
    side = side_files.read_side_files(files)

    checkpoint = read_checkpoint(files.checkpoint, args.trust_checkpoint)
    also_held = ", ".join(map(str, checkpoint.extras)) or "nothing else"
    report(f"checkpoint: {files.checkpoint}, weights under {checkpoint.location}; also held: {also_held}")
    check_tensors_are_sound(checkpoint.state_dict, files.checkpoint)
    layout = find_source_layout(checkpoint.state_dict, files.checkpoint)
    labels, label_origin = side_files.resolve_labels(files, side["label_mapping"], checkpoint.extras, layout.num_labels)
    report(f"labels: {', '.join(f'{i} {label}' for i, label in enumerate(labels))} (from {label_origin})")

    settings = side_files.RunSettings.collect(files, side, checkpoint.extras.get("args"))
    backbone = args.backbone or named_backbone(settings)
    architecture = resolve_architecture(backbone, layout.encoder, settings)
    report(f"architecture: {architecture.origin}")
    config = build_config(architecture, labels, settings)
    max_length = usable_max_length(config.encoder_config, settings)
    tokenizer, tokenizer_source = side_files.load_tokenizer(files, backbone)
    check_tokenizer_fits(len(tokenizer), layout.vocabulary_rows, tokenizer_source)
    model, mapping = build_model(config, layout)
    report("\n".join(mapping.summary(args.verbose)))

    with staged_folder(output_dir, replace=args.overwrite) as staging:
        model.save_pretrained(staging)
        save_tokenizer_for_hub(tokenizer, staging, max_length=max_length)
        difference = verify_saved_folder(staging, model, tokenizer, max_length, labels)
        report(
            f"verified: max abs logit difference {difference:.3g} over {len(VERIFICATION_SENTENCES)} sentences "
            "(fresh process, AutoModelForSequenceClassification + AutoTokenizer, trust_remote_code=True)"
        )
        if args.onnx:  # before the card, which lists the ONNX files
            export_onnx(staging, staging / ONNX_FOLDER, quantize=args.onnx_quantize, report=report)
        training_procedure = {**side_files.training_procedure_from(side["export_config"]), "max_length": max_length}
        metrics = side_files.normalize_metrics(side["metrics"], labels)
        write_model_card(staging, config, metrics, training_procedure, license=args.license, repo_id=args.push_to_hub)
    report(f"wrote {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir()))}")
    return output_dir


def run(argv: list[str] | None) -> int:
    parser = HfArgumentParser(ConversionArguments, prog=PROGRAM, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    output_dir = convert(args)
    if args.push_to_hub:  # the token comes from HF_TOKEN or `hf auth login`
        repo_url = push_folder(output_dir, args.push_to_hub, commit_message=args.commit_message, private=args.private)
        report(f"published: {repo_url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(PROGRAM, lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
