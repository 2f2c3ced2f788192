"""atomic_output and errors: outputs appear whole or not at all, through signals, links and failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kosenttype.atomic_output import (
    atomic_text_output,
    created_folders,
    refuse_input_as_output,
    staged_folder,
    write_text_atomically,
)
from kosenttype.errors import KoSentTypeError, run_command


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_text_output(target) as stream:
        stream.write("half")
        raise RuntimeError("producer failed")
    assert target.read_text(encoding="utf-8") == "previous"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]


def test_folders_created_for_a_failed_write_are_removed_again(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with pytest.raises(RuntimeError), created_folders(target.parent):
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []
    assert write_text_atomically(target, ["x", "y"]).read_text(encoding="utf-8") == "xy"


def test_a_staged_folder_replaces_the_old_one_whole_and_writes_through_a_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(real)
    with staged_folder(link, replace=True) as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
        assert not (real / "new.txt").exists()
    assert link.is_symlink() and sorted(path.name for path in real.iterdir()) == ["new.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "real"]
    with pytest.raises(KoSentTypeError, match="not empty"), staged_folder(real, replace=False):
        pass


def test_an_output_that_is_an_input_is_refused(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("x", encoding="utf-8")
    (tmp_path / "alias.txt").symlink_to(source)
    for output in (source, tmp_path / "alias.txt", tmp_path / "sub" / ".." / "in.txt"):
        with pytest.raises(KoSentTypeError, match="is also an input"):
            refuse_input_as_output(output, [source], "--output")
    with pytest.raises(KoSentTypeError, match="folder that holds the input"):
        refuse_input_as_output(tmp_path, [source], "--output")
    refuse_input_as_output(tmp_path / "other.txt", [source, "-"], "--output")


@pytest.mark.parametrize(
    ("body", "status", "line"),
    [
        ("raise KoSentTypeError('bad row 3')", 2, "prog: error: bad row 3"),
        ("open('/no/such/folder/x', 'w')", 2, "prog: error: No such file or directory: /no/such/folder/x"),
        ("raise ValueError('surprise\\nsecond line')", 2, "prog: error: unexpected ValueError: surprise second line"),
        ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)", 143, "prog: interrupted by SIGTERM"),
        ("os.kill(os.getpid(), signal.SIGHUP); time.sleep(5)", 129, "prog: interrupted by SIGHUP"),
    ],
)
def test_every_command_ends_in_one_line_and_a_fixed_status(body, status, line):
    code = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from kosenttype.errors import KoSentTypeError, run_command
        def body():
            {body}
            return 0
        sys.exit(run_command("prog", body))
        """
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == status, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), completed.stderr


def test_the_run_command_restores_the_signal_handlers():
    before = signal.getsignal(signal.SIGTERM)
    assert run_command("prog", lambda: 0) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert os.environ.get("KOSENTTYPE_DEBUG") is None
