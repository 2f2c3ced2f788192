"""One error type and one way for every command to end: a line `PROG: error: …` on stderr and a fixed exit status:
0 done; 1 done, but some records failed; 2 the run could not go on; 128 + N stopped by signal N. SIGTERM and SIGHUP
become an exception, as SIGINT already does, so that every `with` and `finally` cleans up on the way out.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_ERROR = 2
DEBUG_VARIABLE = "KOSENTTYPE_DEBUG"


class KoSentTypeError(Exception):
    """A problem that stops a run, said in one line a user can act on: which file, row or key, and what to do."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, raised where the program was, so that cleanup code runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_as_exceptions(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Raise `Interrupted` on SIGTERM/SIGHUP for the duration of the block (main thread only, as Python requires)."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_deferred(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Hold these signals back for the block (cleanup that must finish), and let them arrive right after it."""
    if sys.platform == "win32":
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def one_line(error: BaseException, limit: int = 400) -> str:
    """An exception's message folded onto one line (library messages often span many), or its type's name."""
    text = " ".join(str(error).split())
    return (text or type(error).__name__)[:limit]


def run_command(program: str, run: Callable[[], int]) -> int:
    """Run a command's body and turn every way it can end into one line on stderr and an exit status; bugs too
    (`KOSENTTYPE_DEBUG=1` shows their traceback)."""
    try:
        with signals_as_exceptions():
            return run()
    except KoSentTypeError as error:
        message = str(error)
    except SystemExit as request:  # argparse: --help (0) or a bad argument (2, after its usage line)
        return request.code if isinstance(request.code, int) else EXIT_ERROR
    except KeyboardInterrupt as interruption:
        signum = interruption.signum if isinstance(interruption, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(f"{program}: interrupted by {name}; no output was left half-written", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush can't fail again
        return EXIT_SOME_FAILED
    except OSError as error:  # 'no space left on device: out.jsonl', without the errno number
        reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or one_line(error))
        message = f"{reason}: {error.filename}" if error.filename else reason
    except MemoryError:
        message = "out of memory"
    except Exception as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        message = f"unexpected {type(error).__name__}: {one_line(error)} (set {DEBUG_VARIABLE}=1 to see the traceback)"
    print(f"{program}: error: {message}", file=sys.stderr)
    return EXIT_ERROR
