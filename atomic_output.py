"""Outputs that appear whole or not at all, and never over one of the run's own inputs: written beside the
destination under a hidden temporary name and renamed into place once complete, so a crash, a full disk or a signal
leaves the previous content or nothing, and no temporary file.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .errors import KoSentTypeError, signals_deferred


def temporary_sibling(path: Path, suffix: str = "tmp") -> Path:
    """`.NAME.PID.tmp` beside `path`: same file system (so the rename is atomic), hidden, and owned by this run."""
    return path.with_name(f".{path.name}.{os.getpid()}.{suffix}")


def refuse_input_as_output(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], option: str) -> None:
    """Refuse an output that is, or resolves to (through links or `..`), one of the inputs or a folder holding one:
    renaming the finished output onto an input would destroy the user's data."""
    target = Path(output).resolve()
    for source in inputs:
        if os.fspath(source) == "-":
            continue
        resolved = Path(source).resolve()
        if target == resolved or (target.exists() and resolved.exists() and os.path.samefile(target, resolved)):
            raise KoSentTypeError(f"{option} {output} is also an input ({source}); choose another output path")
        if resolved.is_relative_to(target):
            raise KoSentTypeError(f"{option} {output} would replace a folder that holds the input {source}")


def check_writable_file(path: Path, option: str = "output") -> None:
    """Fail before the run, not after it: a missing or read-only folder, or a folder where a file should go."""
    if path.is_dir():
        raise KoSentTypeError(f"cannot write {option} {path}: it is a folder")
    if not path.parent.is_dir():
        raise KoSentTypeError(f"cannot write {option} {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise KoSentTypeError(f"cannot write {option} {path}: folder {path.parent} is not writable")


@contextmanager
def _atomic_file(path: str | os.PathLike, mode: str) -> Iterator[IO]:
    """A stream whose content lands at `path` only once the `with` block finishes without error (UTF-8 text written
    as given, or bytes); opened normally, not with `mkstemp`, so the result gets the usual permissions."""
    temporary = temporary_sibling(Path(path))
    try:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


atomic_text_output = functools.partial(_atomic_file, mode="w")
atomic_binary_output = functools.partial(_atomic_file, mode="wb")


def write_text_atomically(path: str | os.PathLike, text: str | Iterable[str]) -> Path:
    """Write UTF-8 text (one string or pieces of it, consumed lazily) to `path` with `atomic_text_output`."""
    path = Path(path)
    with created_folders(path.parent), atomic_text_output(path) as handle:
        handle.writelines([text] if isinstance(text, str) else text)
    return path


@contextmanager
def created_folders(folder: Path) -> Iterator[None]:
    """`mkdir -p folder` for the block; the folders it had to create are removed again if the block fails."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for parent in missing:  # deepest first; only those still empty, so nothing of anyone else's goes
            with suppress(OSError):
                parent.rmdir()
        raise


@contextmanager
def staged_folder(target: Path, *, replace: bool) -> Iterator[Path]:
    """A hidden folder beside `target` to fill; renamed onto `target` when the block succeeds, removed otherwise.
    An old `target` (only with `replace`) is deleted once the new one is in place; a link is written through."""
    target = Path(target).resolve() if Path(target).is_symlink() else Path(target)
    if target.exists() and not target.is_dir():
        raise KoSentTypeError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not replace:
        raise KoSentTypeError(f"{target} exists and is not empty (pass the overwrite option to replace it)")
    with created_folders(target.parent):
        staging = temporary_sibling(target)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
            if not target.exists():
                os.replace(staging, target)
                return
            previous = temporary_sibling(target, "old")
            with signals_deferred():  # the swap and the old folder's removal finish, whatever arrives meanwhile
                os.replace(target, previous)
                try:
                    os.replace(staging, target)
                except BaseException:
                    os.replace(previous, target)
                    raise
                shutil.rmtree(previous, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
