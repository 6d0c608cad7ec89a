"""User-facing errors.

A mistake a user can fix (bad path, bad flag value, wrong file) is raised as
``FcnEdgeError`` with a one-line message that names the culprit and the fix; the
scripts print it and exit non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import sys
import threading
from types import FrameType
from typing import Callable


class FcnEdgeError(Exception):
    """A problem with the user's input, environment or files, not with the code."""


class Terminated(BaseException):
    """SIGTERM as an exception, like Ctrl-C's KeyboardInterrupt, so that cleanup (temporary files, locks) runs."""


EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


def _interrupted_while_importing(_signum: int, _frame: object) -> None:
    print("interrupted", file=sys.stderr, flush=True)
    # nothing is written yet: no cleanup to run. Not SystemExit: unwinding out of a half-initialised extension
    # module (torch) crashed the interpreter's shutdown (SIGSEGV) in 1 of ~10 runs.
    os._exit(EXIT_INTERRUPTED)


def quiet_interrupt_while_importing() -> None:
    """For a script's first lines: Ctrl-C while its heavy imports load (torch, ONNX tools: seconds) exits 130 with
    one line instead of a KeyboardInterrupt traceback from deep inside an import; ``run_cli`` puts Ctrl-C back."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_importing)


def run_cli(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a script's ``main``: user errors and running out of memory print one line and exit with status 2;
    Ctrl-C and SIGTERM clean up and exit 130 and 143."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="backslashreplace")  # a file name that is not UTF-8 prints as stderr shows it
        if signal.getsignal(signal.SIGINT) is _interrupted_while_importing:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here Ctrl-C cleans up (KeyboardInterrupt)
        previous = _raise_outside_imports()
        try:
            return int(main(argv) or 0)
        except FcnEdgeError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        except Exception as error:  # MemoryError, and the out-of-memory errors of OpenCV, PyTorch, ONNX Runtime
            if not out_of_memory(error):
                raise
            print("error: out of memory: use smaller sizes (or fewer images), or free memory first", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Terminated:
            print("terminated", file=sys.stderr)
            return EXIT_TERMINATED
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapper


OUT_OF_MEMORY_MARKS = (
    "Insufficient memory",  # OpenCV: cv2.error (-4:Insufficient memory) Failed to allocate N bytes
    "can't allocate memory",  # PyTorch: DefaultCPUAllocator: can't allocate memory
    "Failed to allocate memory",  # ONNX Runtime's allocators
    "bad_alloc",  # C++ std::bad_alloc passed through (ONNX Runtime, OpenVINO)
)


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is running out of memory: Python's MemoryError, or a library's own error saying so."""
    return isinstance(error, MemoryError) or any(mark in str(error) for mark in OUT_OF_MEMORY_MARKS)


def _raise_outside_imports() -> dict[int, Callable | int]:
    """Make SIGTERM raise Terminated (and Ctrl-C KeyboardInterrupt) in the main thread, but never inside an import:
    an exception unwinding out of a module being imported mid-command (ONNX Runtime's quantization tools load torch)
    aborted the interpreter inside torch's C++ initialisation, so the signal waits until the import is done.
    Returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for signum, exception, default in ((signal.SIGTERM, Terminated, signal.SIG_DFL),
                                       (signal.SIGINT, KeyboardInterrupt, signal.default_int_handler)):  # fmt: skip
        if signal.getsignal(signum) == default:
            replaced[signum] = signal.signal(signum, _raising(exception))
    return replaced


def _raising(exception: type[BaseException]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if _importing(frame):
            retry = threading.Timer(SIGNAL_RETRY, os.kill, (os.getpid(), signum))
            retry.daemon = True
            retry.start()
            return
        raise exception

    return handler


SIGNAL_RETRY = 0.05  # s between looks at whether the import a SIGTERM landed in has finished


def _importing(frame: FrameType | None) -> bool:
    """Whether the main thread is inside an import (importlib's own frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


TRAIN_EXTRA = (
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu && pip install -e '.[train]' in the "
    "fcn_edge folder (a CPU torch first; on a GPU machine the torch build that matches its CUDA)"
)


def require_torch(what: str, instead: str = "") -> None:
    """Raise one line naming the [train] extra when torch is not installed (the deploy core has none)."""
    if importlib.util.find_spec("torch") is None:
        raise FcnEdgeError(f"{what} needs PyTorch, which this install lacks: {TRAIN_EXTRA}{instead}")


def exit_without_torch(script: str) -> None:
    """For scripts that import torch at the top: one ``error:`` line and exit status 2, before the import fails."""
    try:
        require_torch(script)
    except FcnEdgeError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
