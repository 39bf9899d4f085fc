"""What the command-line scripts share: an expected failure is one line on stderr and a non-zero exit, never a
traceback; progress that a log file can hold."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import TextIO


class OneLineError(RuntimeError):
    """A failure whose message says all a user needs (which stage, file or process, and what to do)."""


class OneLineWarning(UserWarning):
    """A note a script shows as one line on stderr (e.g. which convention a dataset was read with)."""


#: What a script reports in one line: bad input (ValueError: configs, datasets, checkpoints), the file system
#: (OSError: a missing, unreadable or unwritable path, a run directory that is a file) and refusals.
EXPECTED_ERRORS = (ValueError, OSError, OneLineError)


def one_line(err: BaseException) -> str:
    """The error as one line; an OSError names its file first ("path: Permission denied")."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the script's own arguments, the hydra overrides: key=value, +key=value, ~key) wherever they were typed;
    after a list option (``--methods lawr fql profile=cpu``) argparse would take them as items of the list."""
    overrides = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith(("+", "~")))]
    return [a for a in argv if a not in overrides], overrides


def run_main(main: Callable[[], object], prefix: str = "[lawr]") -> None:
    """Run a script's ``main``; an expected failure exits with ``prefix`` and its one line (exit status 1), and a
    ``OneLineWarning`` is ``prefix`` and its one line (not Python's two, with a source line)."""
    format_warning = warnings.formatwarning

    def one_line_warning(message, category, *args, **kwargs) -> str:
        if issubclass(category, OneLineWarning):
            return f"{prefix} warning: {one_line(message)}\n"
        return format_warning(message, category, *args, **kwargs)

    warnings.formatwarning = one_line_warning
    try:
        main()
    except EXPECTED_ERRORS as err:
        sys.exit(f"{prefix} {one_line(err)}")
    except KeyboardInterrupt:
        sys.exit(f"{prefix} interrupted")
    finally:
        warnings.formatwarning = format_warning


# ---------------------------------------------------------------- Isaac Lab's start-up lines

VERBOSE_ENV = "LAWR_VERBOSE"  # "1": make_env lets Isaac Lab print its [INFO] lines (scene, simulation start, ...)


def set_verbose(verbose: bool) -> None:
    """The scripts' ``--verbose``: show Isaac Lab's start-up [INFO] lines (hidden by default; processes started
    from here inherit the choice)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


# ---------------------------------------------------------------- progress a log file can hold

#: Seconds between two progress lines when stderr is not a terminal (a log file, a pipe).
LOG_INTERVAL_S = float(os.environ.get("LAWR_PROGRESS_INTERVAL_S", "30"))


class LineProgress:
    """tqdm's interface (update, set_postfix, close, a context) as plain lines: one every ``interval_s`` seconds
    and one at the end, instead of tqdm's redraws, which a log file records as one line per refresh."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, interval_s: float | None = None,
                 file: TextIO | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval_s = LOG_INTERVAL_S if interval_s is None else interval_s
        self.file = file or sys.stderr
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval_s:
            self._line()

    def set_postfix(self, values: dict) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        self.last = time.monotonic()
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f"  {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{percent}, {self.last - self.started:.0f} s{postfix}",
              file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
    """A progress bar on a terminal (tqdm), a line every ``LOG_INTERVAL_S`` seconds elsewhere, nothing if not
    ``enabled``."""
    from tqdm import tqdm

    if not enabled:
        return tqdm(total=total, initial=initial, disable=True)
    if not sys.stderr.isatty():
        return LineProgress(total, desc, unit, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
