"""What a submission may see of the grader inside its own process: output capture, the
`get_ipython` shim, and the soft per-test deadline.

Everything here is reachable from student code on purpose (it is `sys.stdout`, a name in the
notebook, a signal handler), so nothing here may lead back to the grader: no reference to the
executor, its channel, its key or its fingerprint, and no function whose globals hold them.
Patching anything in this module changes at most the student's own output.
"""
from __future__ import annotations

import io
import types


class CappedStream(io.TextIOBase):
    """A text stream that keeps at most `limit` characters and counts the rest."""

    def __init__(self, name: str, limit: int, fileno: int) -> None:
        self.name, self.limit, self._fileno = name, limit, fileno
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fileno

    @property
    def encoding(self) -> str:
        return "utf-8"

    def take(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters of output were cut by the grader]\n"
        self.parts, self.size, self.dropped = [], 0, 0
        return text


def ipython_shim(module: types.ModuleType):
    """`get_ipython()` for the notebook: a real IPython shell sharing the notebook's namespace,
    made on first use (magics, `!` commands). It knows the notebook's module and nothing else."""
    shell = []

    def get_ipython():
        if not shell:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config
            cfg = Config()
            cfg.HistoryManager.enabled = False
            shell.append(InteractiveShell.instance(config=cfg, user_module=module, user_ns=module.__dict__))
        return shell[0]

    return get_ipython


class TestTimeout(BaseException):
    """Raised inside a test that runs past its soft deadline. A BaseException, so that student
    code's `except Exception` does not swallow it."""


def on_alarm(signum, frame) -> None:
    raise TestTimeout
