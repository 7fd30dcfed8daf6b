"""The process that runs one submission: a minimal notebook kernel built for grading.

It is forked from a server that has already imported torch (see runner.py), so it starts in
milliseconds, and it serves one submission only. The grader sends one cell at a time; this
process runs it and answers with its outputs and, for test cells, a verdict.

What it does that a Jupyter kernel does not:
- Test cells bypass IPython entirely (no input transformers, no hooks) and run with a copy of
  the notebook's globals in which builtins cannot be shadowed and `__builtins__` is real.
- Before and after every test it compares the interpreter with a fingerprint taken before any
  student code ran: module and class attributes of torch, numpy, builtins and `checks`, the
  trace and profile functions, import hooks, torch function/dispatch modes, and the modules
  that the locked setup cells bound to names. A difference means the submission changed what
  the tests rely on: the grader zeroes the affected tests and flags the submission.
- An audit hook, which Python offers no way to remove, reports at once (over the grading
  channel, with references it captured at start-up) when student code uses the tools that
  could defeat the checks above: frame introspection, gc referrers, ctypes memory access,
  tracing, new audit hooks, or swapping a function's code.
- Messages, not tracebacks, for test cells: hidden test code never leaves this process.
"""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import ast
import builtins
import io
import json
import linecache
import os
import signal
import struct
import sys
import threading
import time
import traceback
import types
from typing import Any

# What the fork server imports once, so that no submission pays for it.
import numpy  # noqa: F401
import torch
import torch.nn
import torch.nn.functional
import torch.optim
import torch.utils.data


def _hook_optimizer_classes() -> None:
    """Do now what torch does the first time each of its optimiser classes is instantiated:
    it wraps the class's `step` (for step hooks and the profiler) on the class itself
    (Optimizer._patch_step_function). Done before the fingerprint, the first torch.optim.SGD
    of a submission is not taken for a replaced SGD.step."""
    base = torch.optim.Optimizer
    for value in list(vars(torch.optim).values()):
        if isinstance(value, type) and issubclass(value, base) and value is not base:
            try:
                base._patch_step_function(object.__new__(value))
            except Exception:  # noqa: BLE001  (an optimiser class torch adds later may differ)
                pass


_hook_optimizer_classes()

from . import checks
from .checks.explain import explain
from IPython.core.inputtransformer2 import TransformerManager
from IPython.display import display
from .sandbox import SandboxError, SandboxSpec, confine, isolate, join_cgroups

STUDENT_PREFIX = "<student "
TEST_PREFIX = "<test "
_FRAME = struct.Struct("!I")
MAX_MESSAGE = 16 * 1024 * 1024

WATCHED_MODULES = [
    "builtins", "math", "operator", "functools", "copy", "numpy", "unittest.mock",
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim",
    "torch.autograd", "torch.autograd.grad_mode", "torch.testing", "torch.utils.data",
    "torch.random", "torch.overrides", "torch.linalg",
    # and every torchcourse.checks module (added in Fingerprint)
]
# Audit events that only code trying to get around the checks needs.
_PROXIES = ("/inspect.py", "/traceback.py", "/ctypes/__init__.py")
# Attributes Python itself adds to classes as caches (copyreg stores __slotnames__ the first
# time an object of the class is pickled, e.g. by torch.save): not tampering.
_CACHES = frozenset({"__slotnames__"})
SUSPICIOUS_EVENTS = {
    "sys._getframe": "frame introspection (sys._getframe)",
    "sys._current_frames": "frame introspection (sys._current_frames)",
    "gc.get_referrers": "gc.get_referrers",
    "gc.get_referents": "gc.get_referents",
    "gc.get_objects": "gc.get_objects",
    "sys.settrace": "a trace function (sys.settrace)",
    "sys.setprofile": "a profile function (sys.setprofile)",
    "sys.addaudithook": "a new audit hook",
    "object.__setattr__": "rewriting a function's code or attributes",
    "code.__new__": "building code objects by hand",
    "function.__new__": "building function objects by hand",
    "ctypes.dlopen": "ctypes (raw memory access)",
    "ctypes.dlsym": "ctypes (raw memory access)",
    "ctypes.addressof": "ctypes (raw memory access)",
    "ctypes.string_at": "ctypes (raw memory access)",
    "ctypes.cdata": "ctypes (raw memory access)",
    "ctypes.call_function": "ctypes (raw memory access)",
}


# --- the grading channel ------------------------------------------------------------------

class Channel:
    """Length-prefixed JSON frames over one socket. Only JSON crosses it, never pickles."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._write = os.write  # our own references (see the audit hook)
        self._read = os.read
        # json.dumps/loads are Python wrappers that call isinstance; these go straight to C.
        self._encode = json.JSONEncoder(default=str).iterencode
        self._decode = json.JSONDecoder().decode

    def send(self, message: dict) -> None:
        data = "".join(self._encode(message, _one_shot=True)).encode()
        payload = _FRAME.pack(len(data)) + data
        view = memoryview(payload)
        while view:
            n = self._write(self.fd, view)
            view = view[n:]

    def recv(self) -> dict:
        header = self._exact(_FRAME.size)
        (length,) = _FRAME.unpack(header)
        return self._decode(self._exact(length).decode())

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._read(self.fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf


# --- output capture -----------------------------------------------------------------------

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


# --- the interpreter fingerprint ----------------------------------------------------------

def _watched_classes() -> list[type]:
    import torch.nn.modules as nnm

    classes: list[type] = [torch.Tensor, torch._C.TensorBase, torch.nn.Parameter, torch.nn.Module,
                           torch.optim.Optimizer, torch.utils.data.Dataset, torch.utils.data.DataLoader,
                           torch.autograd.Function, torch.overrides.TorchFunctionMode,
                           checks.CheckFailure, checks.TrainingSpy, checks.TorchCallCounter]
    for module in (nnm, torch.optim, torch.optim.lr_scheduler):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, (torch.nn.Module, torch.optim.Optimizer,
                                                               torch.optim.lr_scheduler.LRScheduler)):
                classes.append(value)
    seen, unique = set(), []
    for c in classes:
        if id(c) not in seen:
            seen.add(id(c))
            unique.append(c)
    return unique


def _stacks() -> tuple[int, int]:
    fn = getattr(torch._C, "_len_torch_function_stack", None)
    dispatch = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return (fn() if fn else 0, dispatch() if dispatch else 0)


class Fingerprint:
    """Strong references to everything the tests rely on, compared by identity later.

    (References, not ids: an id can be reused once its object is freed.)"""

    def __init__(self) -> None:
        names = WATCHED_MODULES + [n for n in sys.modules if n == "torchcourse.checks" or n.startswith("torchcourse.checks.")]
        self.modules = {name: sys.modules[name] for name in names if name in sys.modules}
        self.attrs: dict[tuple[str, str], Any] = {}
        for name, module in self.modules.items():
            for key, value in list(vars(module).items()):
                self.attrs[(name, key)] = value
        self.classes = _watched_classes()
        for cls in self.classes:
            for key, value in list(vars(cls).items()):
                self.attrs[(f"{cls.__module__}.{cls.__qualname__}", key)] = value
        self.class_by_name = {f"{c.__module__}.{c.__qualname__}": c for c in self.classes}
        self.class_keys = {name: set(vars(c)) for name, c in self.class_by_name.items()}
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.stacks = _stacks()

    def differences(self, ns: dict, protected: dict[str, Any]) -> list[str]:
        found: list[str] = []
        if sys.gettrace() is not None or getattr(threading, "_trace_hook", None) is not None:
            found.append("a trace function is installed (sys.settrace)")
        if sys.getprofile() is not None or getattr(threading, "_profile_hook", None) is not None:
            found.append("a profile function is installed (sys.setprofile)")
        if list(sys.meta_path) != self.meta_path or any(a is not b for a, b in zip(sys.meta_path, self.meta_path)):
            found.append("an import hook was installed or removed (sys.meta_path)")
        if list(sys.path_hooks) != self.path_hooks:
            found.append("sys.path_hooks was changed")
        if _stacks() != self.stacks:
            found.append("a TorchFunctionMode or TorchDispatchMode was left active")
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}] was replaced")
        if ns.get("__builtins__") not in (builtins, vars(builtins)):
            found.append("__builtins__ was replaced")
        for name, value in protected.items():
            if ns.get(name) is not value:
                found.append(f"the name {name!r} (bound by the notebook's setup) was rebound")
        for (owner, key), value in self.attrs.items():
            holder = self.modules.get(owner)
            space = vars(holder) if holder is not None else vars(self.class_by_name[owner])
            if key not in space:
                found.append(f"{owner}.{key} was deleted")
            elif space[key] is not value and not _torch_wraps(space[key], value):
                found.append(f"{owner}.{key} was replaced")
            if len(found) > 20:
                break
        for name, keys in self.class_keys.items():
            # A new attribute on a class overrides what its bases provide (Tensor.__eq__ lives
            # on TensorBase, so assigning it on Tensor adds a key).
            added = set(vars(self.class_by_name[name])) - keys - _CACHES
            found.extend(f"{name}.{key} was added" for key in sorted(added)[:5])
        return found


_TORCH_DIR = os.path.join(os.path.dirname(os.path.realpath(torch.__file__)), "")


def _torch_wraps(new: Any, old: Any) -> bool:
    """torch's own wrapper around the original object: torch wraps some of its functions the
    first time torch._dynamo is imported, which meta-device code does lazily (torch.manual_seed
    becomes torch._disable_dynamo(torch.manual_seed)). The wrapper's code must live in torch's
    files and wrap exactly what it replaced: a wrapper written in a notebook cannot qualify,
    and torch's decorators around the original still behave as the original."""
    if getattr(new, "__wrapped__", None) is not old:
        return False
    code = getattr(new, "__code__", None)
    return code is not None and os.path.realpath(code.co_filename).startswith(_TORCH_DIR)


def _install_audit_hook(channel_fd: int, suspicious: dict[str, str]) -> list[str]:
    """Report suspicious events from student code at once; returns the list it appends to."""
    seen: list[str] = []
    busy = [False]
    write, dumps, pack, getframe = os.write, json.dumps, _FRAME.pack, sys._getframe

    def hook(event: str, args: tuple, _seen=seen, _busy=busy, _write=write, _dumps=dumps,
             _pack=pack, _getframe=getframe, _suspicious=suspicious, _fd=channel_fd) -> None:
        if event not in _suspicious or _busy[0]:
            return
        _busy[0] = True
        try:
            # Student code calling the tool itself, or through inspect/traceback (which hand
            # frames back); not library code that uses it for its own purposes (IPython's
            # magics, logging).
            frame = _getframe(1)
            student = False
            if frame is not None:
                name = frame.f_code.co_filename
                if name.startswith(STUDENT_PREFIX):
                    student = True
                elif name.endswith(_PROXIES) and frame.f_back is not None:
                    frame = frame.f_back
                    student = frame.f_code.co_filename.startswith(STUDENT_PREFIX)
            if student:
                what = _suspicious[event]
                where = frame.f_code.co_filename[len(STUDENT_PREFIX):-1]
                _seen.append(f"{what} in cell {where}")
                data = _dumps({"event": "audit", "what": what, "cell": where}).encode()
                _write(_fd, _pack(len(data)) + data)
        finally:
            _busy[0] = False

    sys.addaudithook(hook)
    return seen


# --- running cells ------------------------------------------------------------------------

def _split_last_expression(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
        return tree, last
    return tree, None


def _student_frame(tb) -> tuple[str, int, str] | None:
    """The innermost traceback entry in student code: (cell, line, function)."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith(STUDENT_PREFIX):
            found = (code.co_filename[len(STUDENT_PREFIX):-1], tb.tb_lineno, code.co_qualname)
        tb = tb.tb_next
    return found


def _raised_in_test_code(tb) -> bool:
    """True when the innermost frame of the traceback is the test's own code."""
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(TEST_PREFIX)


def _raised_in_student_code(tb) -> bool:
    """True when the error comes from a stub: the innermost frame is a student's cell and its
    line is a `raise NotImplementedError` statement (a torch op that raises
    NotImplementedError on a student's line adds no frame of its own, so the line decides)."""
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    code = last.tb_frame.f_code
    if not code.co_filename.startswith(STUDENT_PREFIX):
        return False
    line = linecache.getline(code.co_filename, last.tb_lineno)
    return "raise" in line and "NotImplementedError" in line


def _short(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def _student_traceback(err: BaseException) -> list[str]:
    """A traceback showing only student code and libraries, never the grader or tests."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith(TEST_PREFIX) and "torchcourse/executor" not in f.filename]
    lines = traceback.format_list(frames[-8:])
    return ["Traceback (most recent call last):\n", *lines,
            *traceback.format_exception_only(type(err), err)]


class Executor:
    def __init__(self, channel: Channel, limits: dict) -> None:
        self.channel = channel
        self.output_limit = int(limits.get("max_output_chars", 256 * 1024))
        # A test gets a soft deadline below the grader's hard one: an endless loop in the code a
        # test calls fails that test, and grading goes on with the next cell.
        self.test_seconds = float(limits.get("test_timeout_s", 0) or 0)
        signal.signal(signal.SIGALRM, _on_alarm)
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = self.module
        self.ns = self.module.__dict__
        self._shell = None
        self.transformer = TransformerManager()
        self.ns["get_ipython"] = self._get_ipython
        self.ns["display"] = display
        self.builtin_names = set(vars(builtins))
        self.protected: dict[str, Any] = {}
        self.student_ran = False
        self.stdout = CappedStream("stdout", self.output_limit, 1)
        self.stderr = CappedStream("stderr", self.output_limit, 2)
        self._compile, self._exec, self._eval = compile, exec, eval
        self.fingerprint = Fingerprint()
        self.audit_log = _install_audit_hook(channel.fd, SUSPICIOUS_EVENTS)

    def _get_ipython(self):
        """Student code that uses magics gets a real IPython shell sharing its namespace."""
        if self._shell is None:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config
            cfg = Config()
            cfg.HistoryManager.enabled = False
            self._shell = InteractiveShell.instance(config=cfg, user_module=self.module, user_ns=self.ns)
        return self._shell

    # the fd-level capture (C libraries, subprocesses) is read after each cell
    def _fd_output(self) -> str:
        chunks = []
        for f in self._fd_files:
            f.flush()
            data = f.read(self.output_limit)
            rest = len(f.read())
            if data:
                chunks.append(data.decode("utf-8", "replace"))
            if rest:
                chunks.append(f"\n[... {rest} more bytes of output were cut by the grader]\n")
        return "".join(chunks)

    def capture_fds(self) -> None:
        path = os.path.join(os.getcwd(), ".grader-output")
        out = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self._fd_files = [open(path, "rb")]

    def run(self, msg: dict) -> dict:
        kind, source, label = msg["kind"], msg["source"], msg["label"]
        if kind == "test":
            return self.run_test(source, label)
        return self.run_code(source, label, student=(kind in ("answer", "free")))

    def _outputs(self, result_repr: str | None = None) -> list[dict]:
        outputs = []
        for stream in (self.stdout, self.stderr):
            text = stream.take()
            if stream is self.stdout:
                text += self._fd_output()
            if text:
                outputs.append({"output_type": "stream", "name": stream.name, "text": text})
        if result_repr is not None:
            outputs.append({"output_type": "execute_result", "data": {"text/plain": result_repr},
                            "metadata": {}, "execution_count": None})
        return outputs

    def run_code(self, source: str, label: str, student: bool) -> dict:
        """A student cell (answers, free cells) or a locked cell of the notebook."""
        if student:
            self.student_ran = True
        filename = f"{STUDENT_PREFIX}{label}>" if student else f"<notebook {label}>"
        started = time.perf_counter()
        result_repr, error = None, None
        sys.stdout, sys.stderr = self.stdout, self.stderr
        try:
            code = self.transformer.transform_cell(source) if student else source
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            tree, last = _split_last_expression(ast.parse(code, filename=filename))
            self._exec(self._compile(tree, filename, "exec", dont_inherit=True), self.ns)
            if last is not None:
                value = self._eval(self._compile(last, filename, "eval", dont_inherit=True), self.ns)
                if value is not None:
                    result_repr = _short(repr(value), self.output_limit)
        except SystemExit as err:
            error = {"ename": "SystemExit", "evalue": str(err.code), "exit": True,
                     "traceback": ["The notebook called sys.exit() (or exit()); grading stops here.\n"]}
        except BaseException as err:  # noqa: BLE001  (KeyboardInterrupt from student code too)
            error = {"ename": type(err).__name__, "evalue": _short(str(err)),
                     "not_attempted": isinstance(err, NotImplementedError)
                     and _raised_in_student_code(err.__traceback__),
                     "memory": _is_out_of_memory(err),
                     "traceback": _student_traceback(err)}
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if not student and not self.student_ran:
            # Names the locked setup cells bind to modules (torch, nn, checks...) are protected.
            for name, value in self.ns.items():
                if isinstance(value, types.ModuleType) and not name.startswith("__"):
                    self.protected[name] = value
        return {"event": "done", "outputs": self._outputs(result_repr), "error": error,
                "seconds": round(time.perf_counter() - started, 4)}

    def _test_globals(self) -> dict:
        g = {k: v for k, v in self.ns.items() if k not in self.builtin_names}
        g["__builtins__"] = builtins
        g.update(self.protected)
        return g

    def _tamper(self) -> list[str]:
        """Fingerprint differences; an error here (a submission broke the comparison) counts."""
        try:
            return self.fingerprint.differences(self.ns, self.protected)
        except BaseException as err:  # noqa: BLE001
            return [f"the interpreter is too damaged to compare ({type(err).__name__})"]

    def run_test(self, source: str, label: str) -> dict:
        """Tamper check, the test, tamper check again. The checks run whatever the test does,
        so a submission that breaks the grader's own reporting is still flagged."""
        started = time.perf_counter()
        tampered = self._tamper()
        g: dict = {}
        try:
            g = self._test_globals()
            verdict = self._judge(source, label, g)
        except BaseException as err:  # noqa: BLE001
            verdict = {"status": "error", "message": f"The grader could not run this test ({type(err).__name__})."}
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        return self._finish_test(verdict, g, started, tampered)

    def _judge(self, source: str, label: str, g: dict) -> dict:
        filename = f"{TEST_PREFIX}{label}>"  # deliberately not in linecache: no test source in tracebacks
        sys.stdout, sys.stderr = self.stdout, self.stderr
        try:
            code = self._compile(source, filename, "exec", dont_inherit=True, optimize=0)
            if self.test_seconds:
                signal.setitimer(signal.ITIMER_REAL, self.test_seconds)
            try:
                self._exec(code, g)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except TestTimeout:
            return {"status": "error",
                    "message": f"This test did not finish in {self.test_seconds:g} s. The code it calls may "
                               "loop forever (a stopping condition that never becomes true?) or do far "
                               "more work than the task needs."}
        except AssertionError as err:
            text = str(err).strip() or "A check in this test failed (it gives no message)."
            return {"status": "fail", "message": _short(text)}
        except BaseException as err:  # noqa: BLE001
            where = _student_frame(err.__traceback__)
            if isinstance(err, NotImplementedError) and _raised_in_student_code(err.__traceback__):
                # the stub's `raise NotImplementedError(...)`, not torch's own NotImplementedError
                name = f"`{where[2]}`" if where and where[2] != "<module>" else "an answer cell"
                return {"status": "not_attempted",
                        "message": f"Not attempted: {name} still raises NotImplementedError. Replace "
                                   "the stub in the cell marked YOUR CODE HERE with your answer."}
            head = f"{type(err).__name__}: {_short(str(err), 600)}".rstrip(": ")
            if where and not _raised_in_test_code(err.__traceback__):
                cell, line, func = where
                inside = f"in `{func}` " if func != "<module>" else ""
                text = f"Your code raised {head} ({inside}at line {line} of cell {cell})."
            else:
                text = f"The test could not use your result: {head}."
            concept = explain(err)
            if concept:
                text += " " + concept
            return {"status": "error", "message": text,
                    "memory": _is_out_of_memory(err), "exit": isinstance(err, SystemExit),
                    # for the instructor's copy in autograded/ only, never for feedback
                    "detail": _short("".join(traceback.format_exception(err)), 8000)}
        return {"status": "pass", "message": ""}

    def _finish_test(self, verdict: dict, g: dict, started: float, tampered: list[str] | None = None) -> dict:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        tampered = list(tampered or [])
        for key, value in g.items():  # names a test defines stay visible to later cells
            if key not in self.builtin_names and key != "__builtins__":
                self.ns[key] = value
        tampered += [d for d in self._tamper() if d not in tampered]
        return {"event": "done", "verdict": verdict, "tampered": tampered,
                "audit": list(self.audit_log), "outputs": self._outputs(),
                "seconds": round(time.perf_counter() - started, 4)}


class TestTimeout(BaseException):
    """Raised inside a test that runs past its soft deadline. A BaseException, so that student
    code's `except Exception` does not swallow it."""


def _on_alarm(signum, frame) -> None:
    raise TestTimeout


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


# --- entry point (runs in the forked child) -----------------------------------------------

def child_main(fd: int, sandbox: dict, limits: dict, env: dict, files: dict[str, bytes], threads: int) -> None:
    """Set up the sandbox, then serve cells until told to stop. Never returns."""
    channel = Channel(fd)
    try:
        os.setsid()  # its own session and process group: kill(0, ...) reaches only the submission
        spec = SandboxSpec(**sandbox)
        join_cgroups(spec)
        kind = isolate(spec)
        confine(spec, kind)
        for name, data in files.items():  # the assignment's data files, into the work folder
            target = os.path.join(spec.workdir, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        os.environ.clear()
        os.environ.update(env)
        keep = {0, 1, 2, fd}
        for other in os.listdir("/proc/self/fd"):
            n = int(other)
            if n not in keep:
                try:
                    os.close(n)
                except OSError:
                    pass
        torch.set_num_threads(threads)
        checks.core.DEVICE = checks.DEVICE = checks.device()
        executor = Executor(channel, limits)
        executor.capture_fds()
        channel.send({"event": "ready", "sandbox": kind, "uid": os.getuid()})
    except SandboxError as err:
        channel.send({"event": "sandbox-failed", "reason": str(err)})
        os._exit(3)
    except BaseException as err:  # noqa: BLE001
        channel.send({"event": "sandbox-failed", "reason": f"{type(err).__name__}: {err}"})
        os._exit(3)
    while True:
        try:
            msg = channel.recv()
        except EOFError:
            os._exit(0)
        if msg.get("op") == "exit":
            os._exit(0)
        nonce = msg.pop("nonce", None)
        try:
            result = executor.run(msg)
        except BaseException as err:  # noqa: BLE001  (a submission that broke the executor)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            failed = {"status": "error", "message": f"The grader could not run this cell ({type(err).__name__})."}
            result = {"event": "done", "outputs": [], "error": None if msg.get("kind") == "test" else
                      {"ename": type(err).__name__, "evalue": "the grader could not run this cell", "traceback": []},
                      "verdict": failed if msg.get("kind") == "test" else None, "tampered": [], "seconds": 0}
        result["nonce"] = nonce
        nonce = msg = None  # keep it no longer than needed
        channel.send(result)
        if result.get("error") and result["error"].get("exit"):
            os._exit(0)
