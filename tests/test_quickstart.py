"""The README's first commands: its install/run line, its test command, and the quickstart they start."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, run_python

from kosenttype import SENTENCE_TYPES

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
TRAINER_STATE = {"optimizer.pt", "scheduler.pt", "training_args.bin", "trainer_state.json"}


def readme_command(prefix: str) -> str:
    """The README's first command line that starts with `prefix` (inside a code block)."""
    match = re.search(rf"^{re.escape(prefix)}.*$", README, flags=re.MULTILINE)
    assert match, f"README has no command starting with {prefix!r}"
    return match.group(0)


def test_ci_runs_the_readme_install_and_test_commands():
    install_and_run = readme_command("python3 -m venv .venv")
    assert install_and_run.endswith("&& kosenttype-quickstart")
    install = install_and_run.removesuffix(" && kosenttype-quickstart")
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_command("make test") == "make test"
    assert ci_lines[-1] == "make test"
    assert install.replace("pip install", "pip install -q") in ci_lines


def test_quickstart_trains_saves_and_predicts(tmp_path):
    """The quickstart entry point the README runs, in its small setting: a model folder that loads anywhere."""
    executable = shutil.which("kosenttype-quickstart") or f"{sys.executable} -m kosenttype.quickstart"
    completed = subprocess.run(
        [*executable.split(), "--quick", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},  # offline: any download attempt fails instead of hanging
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    model_dir = tmp_path / "model"
    assert f"The Hub-ready model is in {model_dir}" in completed.stdout
    for name in ("config.json", "model.safetensors", "modeling_kosenttype.py", "tokenizer.json", "README.md"):
        assert (model_dir / name).is_file(), name
    # Hub-ready means the package only: the Trainer's state (optimizer 3x the weights, pickled arguments, RNG
    # state) stays in the run folder beside it, where resuming finds it.
    in_model_dir = [path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*")]
    assert [name for name in in_model_dir if "/" in name or (model_dir / name).is_dir()] == []
    assert TRAINER_STATE & set(in_model_dir) == set()
    assert not [name for name in in_model_dir if name.startswith(("checkpoint-", "rng_state"))]
    checkpoints = sorted((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and {path.name for path in checkpoints[-1].iterdir()} >= TRAINER_STATE
    assert list(tmp_path.parent.glob(f".{tmp_path.name}.*")) == []  # the staging folder became tmp_path
    predictions = [json.loads(line) for line in (tmp_path / "demo_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4
    assert all(prediction["label"] in SENTENCE_TYPES for prediction in predictions)

    loaded = run_python(
        "import json\n"
        "from transformers import AutoModelForSequenceClassification, pipeline\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True)\n"
        f"classify = pipeline('text-classification', model={str(model_dir)!r}, trust_remote_code=True)\n"
        "print(json.dumps({'model': type(model).__name__, 'label': classify('내일 다시 연락드릴게요.')[0]['label']}))"
    )
    assert loaded["model"] == "KoSentTypeForSequenceClassification"
    assert loaded["label"] in SENTENCE_TYPES
