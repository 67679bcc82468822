"""One error family.  The CLI prints str(error) and exits with error.exit_code."""

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from generator.source import SourceInfo, read_input


class GenError(Exception):
    """The job could not be done (exit status 2)."""
    exit_code = 2

    def __init__(self, msg: str, info: SourceInfo | None = None):
        super().__init__(msg)
        self.msg = msg
        self.info = info

    def __str__(self) -> str:
        return f"{self.info}: {self.msg}" if self.info else self.msg


class SpecError(GenError):
    """Malformed spec or template."""


class AnchorError(GenError):
    """A spec item's anchor is not (uniquely) in the target tree."""


class ToolError(GenError):
    """A tool or input the job needs is missing or unusable."""


class CheckFailed(GenError):
    """The checked thing failed: a patch did not apply, a build broke (exit 1)."""
    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, as SIGINT raises
    KeyboardInterrupt: the same cleanup runs (temporary directories,
    half-done work), then one line and exit 143 (128 + 15)."""
    exit_code = 128 + signal.SIGTERM


def terminate_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise Terminated (a second one, during the cleanup,
    is ignored); return what restores the previous handler."""
    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)
    return restore


def read_text_input(path: Path, what: str) -> str:
    """An input text file (read_input), UTF-8; anything else is a
    ToolError naming `what` and the file."""
    try:
        data = read_input(path)
    except OSError as e:
        raise ToolError(f"{what}: {path}: {e.strerror}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ToolError(f"{what}: {path}:{line}: not UTF-8 text (byte "
                        f"{data[e.start]:#04x})")
