"""kosenttype-prepare-aihub and kosenttype-quickstart against a hostile user: an output that is an input, outputs
that can't be written, SIGTERM in the middle of the run. Each failure is one line `PROG: error: …` with exit 2 (or
128+N for a signal), and what was on disk before is still there, byte for byte, with no temporary file beside it.

The SIGTERM tests run the real command in a subprocess and send a real signal. To hit a known moment (not a race
with a fast run), the subprocess wraps one function of the run so that it announces `PAUSED` and sleeps there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kosenttype import prepare_aihub, quickstart

SENTENCE = "시립도서관은 이번 주말 야간 개관 시간을 두 시간 늘렸다."
PREPARE = "kosenttype-prepare-aihub"
QUICKSTART = "kosenttype-quickstart"


def aihub_document(*sentences: str) -> bytes:
    annotations = [{"text": sentence, "label": "사실형", "value": {"극성": "긍정"}} for sentence in sentences]
    return json.dumps({"annotation": annotations, "metaData": {"ID": "1"}}, ensure_ascii=False).encode()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` (hidden ones included) with its bytes; None for a folder."""
    return {
        path.relative_to(folder).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def run_main(main, argv: list, capsys) -> tuple[int, list[str]]:
    code = main([str(argument) for argument in argv])
    return code, capsys.readouterr().err.splitlines()


# ----------------------------------------------------------------------------------------------------------------
# The same path as input and output


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink", "dot-dot"])
def test_prepare_refuses_a_document_that_is_also_the_output(tmp_path, capsys, link):
    document = tmp_path / "문서.json"
    document.write_bytes(aihub_document(SENTENCE))
    output = {
        "same": lambda: document,
        "symlink": lambda: (tmp_path / "링크.json").symlink_to(document) or tmp_path / "링크.json",
        "hardlink": lambda: (tmp_path / "하드.json").hardlink_to(document) or tmp_path / "하드.json",
        "dot-dot": lambda: tmp_path / "없는폴더" / ".." / "문서.json",
    }[link]()
    before = snapshot(tmp_path)
    code, err = run_main(prepare_aihub.main, [document, "--output", output], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{PREPARE}: error: --output {output} is also an input")
    assert snapshot(tmp_path) == before  # the input byte for byte, and nothing written or created


def test_prepare_refuses_an_output_that_replaces_an_input_folder_or_the_other_output(tmp_path, capsys):
    folder = tmp_path / "라벨링데이터"
    folder.mkdir()
    (folder / "a.json").write_bytes(aihub_document(SENTENCE))
    before = snapshot(tmp_path)
    code, err = run_main(prepare_aihub.main, [folder / "a.json", "--output", folder], capsys)
    assert code == 2 and len(err) == 1 and "would replace a folder that holds the input" in err[0]
    out = tmp_path / "out.jsonl"
    code, err = run_main(prepare_aihub.main, [folder, "--output", out, "--conflicts_output", out], capsys)
    assert code == 2 and err == [
        f"{PREPARE}: error: --conflicts_output {out} is the --output file; choose another path"
    ]
    assert snapshot(tmp_path) == before


def test_quickstart_refuses_to_replace_its_own_data_or_a_foreign_folder(tmp_path, capsys):
    sample_data = quickstart.SAMPLE_DATA
    before = sample_data.read_bytes()
    code, err = run_main(quickstart.main, ["--quick", "--output-dir", sample_data.parent], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"{QUICKSTART}: error: --output-dir {sample_data.parent} would replace a folder")
    assert sample_data.read_bytes() == before

    folder = tmp_path / "내폴더"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    (folder / "model").mkdir()
    before = snapshot(tmp_path)
    code, err = run_main(quickstart.main, ["--quick", "--output-dir", folder], capsys)
    assert code == 2
    assert err == [
        f"{QUICKSTART}: error: --output-dir {folder} holds files the quickstart did not write (notes.txt); "
        "choose a new or empty folder"
    ]
    assert snapshot(tmp_path) == before


def fake_quickstart_run(monkeypatch, marker: str) -> None:
    """Replace the slow parts (training, the demo) by writing one file, to test what happens to the folder."""

    def build(workspace, settings, seed):
        (workspace / "model").mkdir()
        (workspace / "model" / "config.json").write_text(marker, encoding="utf-8")

    monkeypatch.setattr(quickstart, "build", build)
    monkeypatch.setattr(quickstart, "classify_demo_sentences", lambda workspace, shown: None)


def test_quickstart_rerun_replaces_the_folder_and_follows_a_link(tmp_path, capsys, monkeypatch):
    real = tmp_path / "real" / "quickstart"
    real.mkdir(parents=True)
    (real / "demo_sentences.txt").write_text("from the previous run", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    fake_quickstart_run(monkeypatch, "new")
    code, err = run_main(quickstart.main, ["--output-dir", link], capsys)
    assert (code, err) == (0, [])
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert snapshot(real) == {"model": None, "model/config.json": b"new"}  # nothing left of the previous run
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "real"]
    assert sorted(path.name for path in real.parent.iterdir()) == ["quickstart"]


# ----------------------------------------------------------------------------------------------------------------
# Outputs that can't be written: one line, exit 2, before the inputs are read where that can be known


def unwritable_cases(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "파일.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    (tmp_path / "폴더").mkdir()
    return {
        "a folder": tmp_path / "폴더",
        "inside a file": a_file / "out.jsonl",
        "below a file": a_file / "sub" / "out.jsonl",
        "where nothing can be created": Path("/proc/kosenttype-test/out.jsonl"),
    }


def test_prepare_output_that_cannot_be_written(tmp_path, capsys):
    archive = tmp_path / "TL_가.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        writer.writestr("a.json", aihub_document(SENTENCE))
    for case, output in unwritable_cases(tmp_path).items():
        before = snapshot(tmp_path)
        code, err = run_main(prepare_aihub.main, [archive, "--output", output], capsys)
        assert code == 2, case
        assert len(err) == 1 and err[0].startswith(f"{PREPARE}: error: "), (case, err)
        assert snapshot(tmp_path) == before, case
        assert not output.exists() or output.is_dir(), case


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_prepare_output_in_a_read_only_folder(tmp_path, capsys):
    document = tmp_path / "문서.json"
    document.write_bytes(aihub_document(SENTENCE))
    locked = tmp_path / "잠김"
    locked.mkdir(mode=0o555)
    code, err = run_main(prepare_aihub.main, [document, "--output", locked / "out.jsonl"], capsys)
    assert code == 2 and err == [
        f"{PREPARE}: error: cannot write --output {locked / 'out.jsonl'}: folder {locked} is not writable"
    ]
    assert list(locked.iterdir()) == []


def test_quickstart_output_dir_that_cannot_be_written(tmp_path, capsys):
    cases = unwritable_cases(tmp_path)
    cases = {
        "a file": cases["inside a file"].parent,
        "below a file": cases["below a file"].parent,
        "where nothing can be created": cases["where nothing can be created"].parent,
    }
    for case, output_dir in cases.items():
        before = snapshot(tmp_path)
        code, err = run_main(quickstart.main, ["--quick", "--output-dir", output_dir], capsys)
        assert code == 2, case
        assert len(err) == 1 and err[0].startswith(f"{QUICKSTART}: error: "), (case, err)
        assert snapshot(tmp_path) == before, case


def test_usage_and_errors_name_the_console_scripts(capsys):
    for main, program in ((prepare_aihub.main, PREPARE), (quickstart.main, QUICKSTART)):
        assert main(["--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {program} ")
        assert main(["--no-such-option"]) == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith(f"{program}: error: ")


# ----------------------------------------------------------------------------------------------------------------
# SIGTERM in the middle of the run


PAUSE_PREPARE_WHILE = {
    "reading": """
parse = prepare_aihub.parse_document
def paused(document):
    pause()
    return parse(document)
prepare_aihub.parse_document = paused
""",
    "writing": """
serialize = prepare_aihub.serialize_records
def paused(records, json_lines):
    pieces = serialize(records, json_lines)
    yield next(pieces)
    pause()
    yield from pieces
prepare_aihub.serialize_records = paused
""",
}
PAUSE_QUICKSTART_WHILE = {
    # Right after the first checkpoint's weights are saved, halfway through training.
    "training": """
import transformers
save_model = transformers.Trainer.save_model
def paused(self, *args, **kwargs):
    save_model(self, *args, **kwargs)
    pause()
transformers.Trainer.save_model = paused
""",
    # The model is complete in the folder being built, not yet moved into place.
    "predicting": """
from kosenttype import predict
def paused(argv):
    pause()
predict.main = paused
""",
}
PAUSE = """
import sys, time
def pause():
    print("PAUSED", flush=True)
    time.sleep(300)
"""


def terminate_when_paused(patch: str, program: str, argv: list, cwd: Path, look_for: str | None = None) -> str:
    """Run `program.main(argv)` in a fresh interpreter with `patch` applied, SIGTERM it once it pauses, and return
    its stderr after asserting it stopped as a signal should. `look_for`: a glob that must match before the signal
    (proof that the run is mid-write)."""
    module = {PREPARE: "prepare_aihub", QUICKSTART: "quickstart"}[program]
    code = f"{PAUSE}\nfrom kosenttype import {module}\n{patch}\nsys.exit({module}.main(sys.argv[1:]))\n"
    stderr_path = cwd.parent / f"{cwd.name}.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, argv)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            for line in process.stdout:
                if line.strip() == "PAUSED":
                    break
            else:
                pytest.fail(f"the run ended before pausing: {stderr_path.read_text()[-3000:]}")
            if look_for:
                assert list(cwd.glob(look_for)), f"nothing matches {look_for}: {snapshot(cwd).keys()}"
            process.send_signal(signal.SIGTERM)
            process.stdout.read()
            assert process.wait(timeout=120) == 128 + signal.SIGTERM
        finally:
            process.kill()
            process.wait()
    lines = stderr_path.read_text().splitlines()
    stderr_path.unlink()
    assert lines[-1] == f"{program}: interrupted by SIGTERM; no output was left half-written"
    return lines


@pytest.mark.parametrize("moment", ["reading", "writing"])
def test_prepare_sigterm_leaves_the_previous_output_and_no_temporary_file(tmp_path, moment):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "TL_가.zip"
    with zipfile.ZipFile(archive, "w") as writer:
        for number in range(3):
            writer.writestr(f"{number}.json", aihub_document(*(f"{SENTENCE} {number}-{i}" for i in range(50))))
    (work / "out.jsonl").write_text('{"previous": "run"}\n', encoding="utf-8")
    before = snapshot(work)
    look_for = ".out.jsonl.*.tmp" if moment == "writing" else None
    argv = [archive.name, "--output", "out.jsonl"]
    terminate_when_paused(PAUSE_PREPARE_WHILE[moment], PREPARE, argv, work, look_for)
    assert snapshot(work) == before


def test_quickstart_sigterm_while_training_leaves_nothing_in_a_new_folder(tmp_path):
    argv = ["--quick", "--output-dir", "outputs/quickstart"]
    look_for = "outputs/.quickstart.*.tmp/checkpoints/checkpoint-*/model.safetensors"
    terminate_when_paused(PAUSE_QUICKSTART_WHILE["training"], QUICKSTART, argv, tmp_path, look_for)
    assert snapshot(tmp_path) == {}  # not even the `outputs` folder it had to create


def test_quickstart_sigterm_before_the_model_is_in_place_keeps_the_previous_folder(tmp_path):
    (tmp_path / "outputs" / "quickstart" / "model").mkdir(parents=True)
    (tmp_path / "outputs" / "quickstart" / "model" / "config.json").write_text("previous", encoding="utf-8")
    (tmp_path / "outputs" / "quickstart" / "demo_sentences.txt").write_text("previous", encoding="utf-8")
    before = snapshot(tmp_path)
    argv = ["--quick", "--output-dir", "outputs/quickstart"]
    look_for = "outputs/.quickstart.*.tmp/model/model.safetensors"  # the new model, complete, not yet moved
    terminate_when_paused(PAUSE_QUICKSTART_WHILE["predicting"], QUICKSTART, argv, tmp_path, look_for)
    assert snapshot(tmp_path) == before
