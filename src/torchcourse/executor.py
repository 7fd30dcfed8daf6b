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

What keeps the grader out of the submission's reach (see the README's architecture):
- Every frame sent to the grader is signed (keyed BLAKE2b over a sequence number and the
  payload) with a key that reaches this process through the fork server before any student
  code runs and never crosses the channel; the grader drops the submission at the first frame
  it cannot verify. Commands carry no secret, so reading them (a thread, a forked child) gives
  nothing to forge with.
- Once set up, this module leaves `sys.modules` and the `torchcourse` package: the executor,
  its channel and its fingerprint are reachable only through frames, the heap or raw memory,
  which the audit hook refuses to student code (it raises, and the grader is told).
  What student code may reach on purpose (`sys.stdout`, `get_ipython`, the alarm handler)
  lives in `childio`, which holds nothing of the grader's.
- Nothing here calls a method the submission defined while it checks or reports: names are
  compared as exact strings, objects by identity, and frames are encoded by C code.
"""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import _json
import _thread
import ast
import builtins
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

from _blake2 import blake2b

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


def _apply_dynamo_patches() -> None:
    """Do now what torch._dynamo does the first time anything is compiled: it replaces
    nn.Module.__init__ and __setstate__ with versions that tag each new module
    (mutation_guard.install_generation_tagging_init), and wraps every optimiser class's
    `_init_group` (TorchPatcher.patch). Done before the fingerprint, a submission that calls
    torch.compile is not taken for one that patched torch. Only for assignments whose fork
    server preloaded torch._dynamo; the rest never see these patches."""
    if "torch._dynamo" not in sys.modules:
        return
    try:
        from torch._dynamo.eval_frame import TorchPatcher
        from torch._dynamo.mutation_guard import install_generation_tagging_init
    except ImportError:  # a torch that moved them: compiling then shows up as a changed torch
        return
    TorchPatcher.patch()
    install_generation_tagging_init()

from . import checks
from .checks.explain import explain
from IPython.core.inputtransformer2 import TransformerManager
from IPython.display import display
from . import childio
from .sandbox import SandboxError, SandboxSpec, confine, isolate, join_cgroups

STUDENT_PREFIX = "<student "
TEST_PREFIX = "<test "
_FRAME = struct.Struct("!I")
_HEAD = struct.Struct("!IQ")  # frames to the grader: length, sequence number
MAX_MESSAGE = 16 * 1024 * 1024

WATCHED_MODULES = [
    "builtins", "math", "operator", "functools", "copy", "numpy", "unittest.mock",
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim",
    "torch.autograd", "torch.autograd.grad_mode", "torch.testing", "torch.utils.data",
    "torch.random", "torch.overrides", "torch.linalg",
    # and every torchcourse.checks module (added in Fingerprint)
]
# Audit events that only code trying to get around the checks needs. Who triggered one
# decides what happens (see _install_audit_hook).
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
    "marshal.loads": "loading code objects from bytes (marshal)",
    "marshal.load": "loading code objects from bytes (marshal)",
    "ctypes.dlopen": "ctypes (raw memory access)",
    "ctypes.dlsym": "ctypes (raw memory access)",
    "ctypes.addressof": "ctypes (raw memory access)",
    "ctypes.string_at": "ctypes (raw memory access)",
    "ctypes.wstring_at": "ctypes (raw memory access)",
    "ctypes.cdata": "ctypes (raw memory access)",
    "ctypes.cdata/buffer": "ctypes (raw memory access)",
    "ctypes.call_function": "ctypes (raw memory access)",
    "ctypes.PyObj_FromPtr": "ctypes (raw memory access)",
}
# Attributes whose reading hands out a frame or a code object ("object.__getattr__" events).
FRAME_ATTRS = {"tb_frame": "frame introspection (a traceback's tb_frame)",
               "gi_frame": "frame introspection (a generator's gi_frame)",
               "cr_frame": "frame introspection (a coroutine's cr_frame)",
               "ag_frame": "frame introspection (an async generator's ag_frame)",
               "__code__": "reading a function's code object (__code__)"}
# Library functions that only hand a frame back to whoever called them: their caller is
# judged instead (student code calling inspect.currentframe() is student code asking).
_PROXY_FUNCTIONS = {("inspect.py", n) for n in ("currentframe", "stack", "trace", "getouterframes",
                                                "getinnerframes", "getframeinfo")}
_PROXY_FUNCTIONS |= {("traceback.py", "walk_stack"), ("traceback.py", "walk_tb"),
                     ("logging/__init__.py", "<lambda>")}
_PROXY_MODULES = ("/ctypes/__init__.py",)
# Code that is the grader's own: handing any of its frames to anyone is refused.
_GRADER_FILES = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), f)
                      for f in ("executor.py", "zygote.py", "sandbox.py"))
_MEM_FILE = __import__("re").compile(r"^/proc/(self|thread-self|\d+)(/task/\d+)?/mem$")
MAX_AUDIT_REPORTS = 20
# Attributes Python itself adds to classes as caches (copyreg stores __slotnames__ the first
# time an object of the class is pickled, e.g. by torch.save): not tampering.
_CACHES = frozenset({"__slotnames__"})
# Reading a class's __annotations__ when it has none makes Python (3.10 to 3.13) store an empty
# dict on the class: torch.jit.script does it for every layer class of a model it compiles.
_LAZY_EMPTY = frozenset({"__annotations__"})


# --- the grading channel ------------------------------------------------------------------

class Channel:
    """Length-prefixed JSON frames over one socket. Only JSON crosses it, never pickles.

    Frames to the grader: header (payload length, sequence number), payload, then a 16-byte
    keyed BLAKE2b of sequence number and payload. Frames from the grader carry no secret."""

    def __init__(self, fd: int, key: bytes) -> None:
        self.fd = fd
        self._write = os.write  # our own references: the module globals are gone once sealed
        self._read = os.read
        self._mac = lambda data, _key=key, _b=blake2b: _b(data, key=_key, digest_size=16).digest()
        self._seq = [0]
        self._lock = _thread.allocate_lock()  # the audit hook may send from another thread
        # The C encoder itself (json.dumps is Python a submission could patch).
        self._encode = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None,
                                          ":", ",", False, True, True)
        self._decode = json.JSONDecoder().decode

    def send(self, message: dict) -> None:
        data = "".join(self._encode(message, 0)).encode()
        with self._lock:
            seq = self._seq[0]
            self._seq[0] = seq + 1
            head = _HEAD.pack(len(data), seq)
            payload = head + data + self._mac(head + data)
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


def _unencodable(obj: Any) -> str:
    return "<not JSON>"  # never str(obj): that would run the submission's __str__


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


_len_fn_stack = getattr(torch._C, "_len_torch_function_stack", None)
_len_dispatch_stack = getattr(torch._C, "_len_torch_dispatch_stack", None)


def _stacks() -> tuple[int, int]:
    return (_len_fn_stack() if _len_fn_stack else 0, _len_dispatch_stack() if _len_dispatch_stack else 0)


def _defined_in(value: Any, filename: str) -> bool:
    """True for a plain function, or a class with plain type as its metaclass, whose code was
    compiled from `filename`. Only attributes of real functions and types are read: nothing a
    submission wrote can run here."""
    if type(value) is types.FunctionType:
        return value.__code__.co_filename == filename
    if type(value) is type:
        for member in vars(value).values():
            if type(member) in (staticmethod, classmethod):
                member = member.__func__
            if type(member) is types.FunctionType and member.__code__.co_filename == filename:
                return True
    return False


def _str_keys(mapping: dict) -> list[str]:
    """The keys of a namespace that are exact strings. Hashing or comparing any other key
    would run code the submission wrote (a str subclass can define __hash__ and __eq__)."""
    return [k for k in list(mapping) if type(k) is str]


class Fingerprint:
    """Strong references to everything the tests rely on, compared by identity later.

    (References, not ids: an id can be reused once its object is freed.) Every comparison is
    by identity or between exact strings, so no method a submission defined runs here; the
    functions it calls were captured when it was made."""

    def __init__(self) -> None:
        names = WATCHED_MODULES + [n for n in sys.modules if n == "torchcourse.checks" or n.startswith("torchcourse.checks.")]
        self.modules = {name: sys.modules[name] for name in names if name in sys.modules}
        self.sys_modules = sys.modules
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
        self.meta_path_list, self.path_hooks_list = sys.meta_path, sys.path_hooks
        self.meta_path = tuple(sys.meta_path)
        self.path_hooks = tuple(sys.path_hooks)
        self.stacks = _stacks()
        self.gettrace, self.getprofile = sys.gettrace, sys.getprofile
        self.threading = threading
        self.builtins_module, self.builtins_dict = builtins, vars(builtins)

    @staticmethod
    def _same(now: list, then: tuple) -> bool:
        return len(now) == len(then) and all(a is b for a, b in zip(now, then))

    def differences(self, ns: dict, protected: dict[str, Any]) -> list[str]:
        found: list[str] = []
        if self.gettrace() is not None or getattr(self.threading, "_trace_hook", None) is not None:
            found.append("a trace function is installed (sys.settrace)")
        if self.getprofile() is not None or getattr(self.threading, "_profile_hook", None) is not None:
            found.append("a profile function is installed (sys.setprofile)")
        if sys.meta_path is not self.meta_path_list or not self._same(list(self.meta_path_list), self.meta_path):
            found.append("an import hook was installed or removed (sys.meta_path)")
        if sys.path_hooks is not self.path_hooks_list or not self._same(list(self.path_hooks_list), self.path_hooks):
            found.append("sys.path_hooks was changed")
        if _stacks() != self.stacks:
            found.append("a TorchFunctionMode or TorchDispatchMode was left active")
        for name, module in self.modules.items():
            if self.sys_modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}] was replaced")
        current = ns.get("__builtins__")
        if current is not self.builtins_module and current is not self.builtins_dict:
            found.append("__builtins__ was replaced")
        for name, value in protected.items():
            if ns.get(name) is not value:
                found.append(f"the name {name!r} (bound by the notebook's setup) was rebound")
        spaces = {owner: vars(m) for owner, m in self.modules.items()}
        spaces.update({owner: vars(c) for owner, c in self.class_by_name.items()})
        for (owner, key), value in self.attrs.items():
            space = spaces[owner]
            if key not in space:
                found.append(f"{owner}.{key} was deleted")
            elif space[key] is not value and not _torch_wraps(space[key], value):
                found.append(f"{owner}.{key} was replaced")
            if len(found) > 20:
                break
        for name, keys in self.class_keys.items():
            # A new attribute on a class overrides what its bases provide (Tensor.__eq__ lives
            # on TensorBase, so assigning it on Tensor adds a key).
            space = vars(self.class_by_name[name])
            if any(type(k) is not str for k in list(space)):
                found.append(f"{name} got an attribute whose name is not a plain string")
            added = [k for k in _str_keys(space) if k not in keys and k not in _CACHES
                     and not (k in _LAZY_EMPTY and type(space[k]) is dict and not space[k])]
            found.extend(f"{name}.{key} was added" for key in sorted(added)[:5])
        return found


_TORCH_DIR = os.path.join(os.path.dirname(os.path.realpath(torch.__file__)), "")


def _torch_wraps(new: Any, old: Any) -> bool:
    """torch's own wrapper around the original object: torch wraps some of its functions the
    first time torch._dynamo is imported, which meta-device code does lazily (torch.manual_seed
    becomes torch._disable_dynamo(torch.manual_seed)). The wrapper's code must live in torch's
    files and wrap exactly what it replaced: a wrapper written in a notebook cannot qualify,
    and torch's decorators around the original still behave as the original. Only plain
    functions qualify, read without attribute hooks (no __getattr__ of the submission runs)."""
    if type(new) is not types.FunctionType:
        return False
    if _FUNC_DICT(new).get("__wrapped__", None) is not old:
        return False
    code = _FUNC_CODE(new)
    return os.path.realpath(code.co_filename).startswith(_TORCH_DIR)


_FUNC_DICT = types.FunctionType.__dict__["__dict__"].__get__
_FUNC_CODE = types.FunctionType.__dict__["__code__"].__get__


def _trusted_prefixes() -> tuple[str, ...]:
    """Folders whose files are library or grader code: the Python installation and this
    package. They are read-only inside the sandbox, so a submission cannot add a file there."""
    from .sandbox import python_prefixes
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = {os.path.join(os.path.realpath(p), "") for p in python_prefixes()}
    dirs |= {os.path.join(p, "") for p in python_prefixes()}
    dirs |= {os.path.join(here, ""), os.path.join(os.path.realpath(here), "")}
    return tuple(sorted(dirs))


def _install_audit_hook(channel: Channel, suspicious: dict[str, str]) -> list[str]:
    """Refuse the tools that could reach the grader, and tell the grader when student code
    asks for them. Returns the list of what was reported.

    Who asked decides. Code is trusted when its file is a real file of the Python
    installation or of this package, or a test or locked cell of the notebook (names a
    submission cannot forge: compile() with such a name is refused, and so are hand-made code
    objects). For a suspicious event:
    - student code asked (directly, or through a library function that only hands the frame
      back, like inspect.currentframe): refused (ValueError, or RuntimeError for new audit
      hooks) and reported: the submission is flagged;
    - a library function asked, called straight from student code (namedtuple, or IPython's
      get_local_scope with a depth the student chose): refused quietly with ValueError,
      which such libraries already tolerate; nothing is reported;
    - a library asked on its own behalf, deeper down: allowed, unless what it hands out is
      one of the grader's own frames or a test's.
    Python offers no way to remove an audit hook. Reports are capped at MAX_AUDIT_REPORTS."""
    seen: list[str] = []
    busy = [False]
    prefixes = _trusted_prefixes()
    getframe, send = sys._getframe, channel.send
    grader_files, frame_attrs = _GRADER_FILES, FRAME_ATTRS
    proxy_functions, proxy_modules = _PROXY_FUNCTIONS, _PROXY_MODULES
    mem_file, realpath, isabs = _MEM_FILE, os.path.realpath, os.path.isabs
    frame_type = types.FrameType
    torch_dir = (_TORCH_DIR, os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), ""))
    state = {"active": False, "reported": 0}

    def library_file(name: str) -> bool:
        # A source file of the installation. Libraries also compile code they generate under
        # names made from their own file's (torch's AOT autograd: ".../codegen.py:codegen(...)");
        # such code is not a file of the installation and is not trusted, so compiling it
        # needs no permission either.
        return name.startswith(prefixes) and name.endswith(".py")

    def trusted(code) -> bool:
        name = code.co_filename
        return (type(name) is str and (library_file(name) or name.startswith(("<frozen ", TEST_PREFIX, "<notebook "))))

    def is_proxy(code) -> bool:
        name = code.co_filename
        return name.endswith(proxy_modules) or any(name.endswith("/" + f) and code.co_name == fn
                                                   for f, fn in proxy_functions)

    def sensitive(frame) -> bool:
        return type(frame) is frame_type and (frame.f_code.co_filename in grader_files
                                              or frame.f_code.co_filename.startswith(TEST_PREFIX))

    def looks_trusted(filename) -> bool:
        if type(filename) is bytes:
            filename = filename.decode("utf-8", "replace")
        return type(filename) is str and (library_file(filename) or filename.startswith(("<frozen ", TEST_PREFIX, "<notebook ")))

    def report(what: str, frame) -> None:
        name = frame.f_code.co_filename if frame is not None else "?"
        where = name[len(STUDENT_PREFIX):-1] if name.startswith(STUDENT_PREFIX) else name
        state["reported"] += 1
        if state["reported"] > MAX_AUDIT_REPORTS + 1:
            return
        if state["reported"] == MAX_AUDIT_REPORTS + 1:
            what, where = "more of the same (further reports were dropped)", where
        seen.append(f"{what} in cell {where}")
        send({"event": "audit", "what": what, "cell": where})

    def hook(event: str, args: tuple) -> None:
        if busy[0] or not state["active"]:
            return
        what = suspicious.get(event)
        handed = None
        if event == "object.__getattr__":
            what = frame_attrs.get(args[1]) if len(args) > 1 and type(args[1]) is str else None
            if what is not None and args[1] != "__code__":
                busy[0] = True
                try:
                    handed = getattr(args[0], args[1], None)
                finally:
                    busy[0] = False
        elif event == "sys._getframe":
            handed = args[0] if args else None
        elif event == "open":
            path = args[0] if args else None
            if type(path) is bytes:
                path = path.decode("utf-8", "replace")
            if type(path) is not str:
                return
            full = realpath(path) if isabs(path) else path
            if mem_file.match(path) or mem_file.match(full):
                what = "raw memory access (/proc/.../mem)"
            elif path.endswith(".pyc") and not full.startswith(prefixes):
                what = "loading compiled code from outside the Python installation"
            else:
                return
        elif event == "compile":
            filename = args[1] if len(args) > 1 else None
            if not looks_trusted(filename):
                return
            what = "compiling code under a library's or the grader's file name"
        if what is None:
            return
        busy[0] = True
        try:
            frame = getframe(1)
            while frame is not None and is_proxy(frame.f_code):
                frame = frame.f_back
            if frame is None:
                return
            if frame.f_code.co_filename == "<string>" and event == "object.__getattr__":
                # an expression torch's own code evaluated (torch.compile's guards read
                # `G['helper'].__code__` through eval, from more than torch._dynamo's files):
                # judged as the torch function that ran it, whose caller must in turn be
                # trusted (below)
                above = frame.f_back
                if above is not None and type(above.f_code.co_filename) is str \
                        and above.f_code.co_filename.startswith(torch_dir) and trusted(above.f_code):
                    frame = above
            if event == "compile" and trusted(frame.f_code):
                # a library compiling a real file: fine if it is that file's own source
                source = args[0]
                if type(source) is str:
                    source = source.encode()
                if type(source) is not bytes or not looks_trusted(args[1]) or not args[1].startswith("/"):
                    return
                try:
                    with open(args[1], "rb") as f:
                        if f.read() == source:
                            return
                except OSError:
                    pass
                report(what, frame)
                raise ValueError(f"{what} is not allowed in graded code")
            if event == "sys.addaudithook":
                if not trusted(frame.f_code):
                    report(what, frame)
                raise RuntimeError("audit hooks are not allowed in graded code")
            if not trusted(frame.f_code):
                report(what, frame)
                raise ValueError(f"{what} is not allowed in graded code")
            caller = frame.f_back
            if caller is not None and not trusted(caller.f_code):
                raise ValueError(f"{what} is not allowed in graded code")
            # a library driven from just above (IPython's run_line_magic with a stack depth
            # the student chose) must not hand over the grader's frames or a test's
            above = caller.f_back if caller is not None else None
            if handed is not None and sensitive(handed) and (above is None or not trusted(above.f_code)):
                raise ValueError("the grader's own frames are not available")
        finally:
            busy[0] = False

    sys.addaudithook(hook)
    state["active"] = True
    return seen


# --- the student's values, by value ------------------------------------------------------

MAX_DATA_BYTES = 8 * 1024 * 1024
_SCALARS = (type(None), bool, int, float, str)
_TYPES = {t: f"{t.__module__}.{t.__qualname__}" for t in
          (int, float, bool, str, list, tuple, dict, set, frozenset, type(None), complex, bytes,
           torch.Tensor, torch.nn.Parameter, torch.Size, torch.dtype, torch.device)}
_TYPES_BACK = {v: k for k, v in _TYPES.items()}


def to_data(value: Any, depth: int = 0, budget: list | None = None) -> Any:
    """A value of the student's as JSON-able data: scalars, containers, exact tensors, sizes,
    dtypes, devices and builtin types; anything else becomes an opaque marker (its type's
    name). This runs in the student's process and trusts nothing: the values are the
    student's answer either way, and the judge decodes them strictly."""
    budget = budget if budget is not None else [MAX_DATA_BYTES]
    kind = type(value)
    if depth > 20 or budget[0] <= 0:
        return {"$": "opaque", "type": "too large or too deep"}
    if kind in _SCALARS:
        if kind is str:
            budget[0] -= len(value)
        if kind is float and value != value:
            return {"$": "float", "value": "nan"}
        if kind is float and value in (float("inf"), float("-inf")):
            return {"$": "float", "value": "inf" if value > 0 else "-inf"}
        return value
    if kind in (list, tuple, set, frozenset):
        items = [to_data(v, depth + 1, budget) for v in list(value)[:100_000]]
        return {"$": kind.__name__, "items": items}
    if kind is dict:
        pairs = [[to_data(k, depth + 1, budget), to_data(v, depth + 1, budget)]
                 for k, v in list(dict.items(value))[:100_000]]
        return {"$": "dict", "items": pairs}
    if kind is torch.Size:
        return {"$": "size", "items": [int(v) for v in tuple.__iter__(value)]}
    if kind is torch.dtype:
        return {"$": "dtype", "name": str(value).split(".")[-1]}
    if kind is torch.device:
        return {"$": "device", "name": str(value)}
    if kind is type and value in _TYPES:
        return {"$": "type", "name": _TYPES[value]}
    if kind is torch.Tensor and value.layout is torch.strided:
        device = value.device.type
        meta = {"$": "tensor", "dtype": str(value.dtype).split(".")[-1], "shape": list(value.shape),
                "requires_grad": bool(value.requires_grad), "device": device}
        if device != "meta":
            flat = value.detach().to("cpu").contiguous().reshape(-1)
            raw = bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""
            budget[0] -= len(raw)
            if budget[0] < 0:
                return {"$": "opaque", "type": "a tensor too large to send"}
            meta["data"] = __import__("base64").b64encode(raw).decode()
        return meta
    try:
        name = type.__dict__["__qualname__"].__get__(kind)
    except Exception:  # noqa: BLE001
        name = "object"
    return {"$": "opaque", "type": name if type(name) is str else "object"}


class Opaque:
    """What the judge sees of a value that is not data (a function, an object of the
    student's class): enough for a test to say what it got, nothing to call."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


def from_data(data: Any, depth: int = 0) -> Any:
    """The judge's side of to_data: strict, and never more than JSON could say."""
    if depth > 25:
        return Opaque("too deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or type(data.get("$")) is not str:
        return Opaque("malformed")
    kind = data["$"]
    items = data.get("items") if type(data.get("items")) is list else []
    if kind in ("list", "tuple", "set", "frozenset"):
        values = [from_data(v, depth + 1) for v in items]
        try:
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](values)
        except TypeError:  # an unhashable member of a set
            return Opaque(kind)
    if kind == "dict":
        out = {}
        for pair in items:
            if type(pair) is list and len(pair) == 2:
                key = from_data(pair[0], depth + 1)
                try:
                    out[key] = from_data(pair[1], depth + 1)
                except TypeError:
                    return Opaque("dict")
        return out
    if kind == "float":
        return float(data.get("value", "nan"))
    if kind == "size":
        return torch.Size([int(v) for v in items if type(v) is int])
    if kind == "dtype":
        value = getattr(torch, str(data.get("name")), None)
        return value if type(value) is torch.dtype else Opaque("dtype")
    if kind == "device":
        try:
            return torch.device(str(data.get("name")))
        except (RuntimeError, ValueError):
            return Opaque("device")
    if kind == "type":
        return _TYPES_BACK.get(data.get("name"), Opaque("type"))
    if kind == "tensor":
        dtype = getattr(torch, str(data.get("dtype")), None)
        shape = data.get("shape")
        if type(dtype) is not torch.dtype or type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
            return Opaque("tensor")
        if data.get("device") == "meta":
            t = torch.empty(shape, dtype=dtype, device="meta")
        else:
            raw = __import__("base64").b64decode(str(data.get("data", "")))
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            try:
                t = flat.view(dtype).reshape(shape).clone() if raw else torch.empty(shape, dtype=dtype)
            except RuntimeError:
                return Opaque("tensor")
        device = data.get("device")
        if device not in ("cpu", "meta") and type(device) is str:
            try:
                t = t.to(device)
            except (RuntimeError, ValueError):
                pass  # no such device in the judge: the values still compare on the CPU
        if data.get("requires_grad") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t
    return Opaque(str(data.get("type", "object"))[:100])


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
        signal.signal(signal.SIGALRM, childio.on_alarm)
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = self.module
        self.ns = self.module.__dict__
        self.transformer = TransformerManager()
        self.ns["get_ipython"] = childio.ipython_shim(self.module)
        self.ns["display"] = display
        self.builtin_names = frozenset(vars(builtins))
        # Test cells get this copy of the builtins, taken before any student code ran: a
        # submission that patches builtins.isinstance changes what its own code sees, not
        # what the tests see.
        self.test_builtins = dict(vars(builtins))
        self.protected: dict[str, Any] = {}
        # Functions and classes the notebook's locked cells define (a Net, a train_epoch the
        # tests call): tests always see these, whatever a submission rebinds the names to.
        self.locked_defs: dict[str, Any] = {}
        self.student_ran = False
        self.stdout = childio.CappedStream("stdout", self.output_limit, 1)
        self.stderr = childio.CappedStream("stderr", self.output_limit, 2)
        self._compile, self._exec, self._eval = compile, exec, eval
        self.fingerprint = Fingerprint()
        self.audit_log = _install_audit_hook(channel, SUSPICIOUS_EVENTS)

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
        if msg.get("op") == "values":
            return {"event": "done", "values": {name: to_data(self.ns[name]) for name in msg["names"]
                                                if type(name) is str and name in self.ns}}
        kind, source, label = msg["kind"], msg["source"], msg["label"]
        if kind == "test":
            return self.run_test(source, label, msg.get("inject"))
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
        if not student and error is None:
            for name in _str_keys(self.ns):
                if _defined_in(self.ns[name], filename):
                    self.locked_defs[name] = self.ns[name]
        if not student and not self.student_ran:
            # Names the locked setup cells bind to modules (torch, nn, checks...) are protected.
            for name, value in self.ns.items():
                if isinstance(value, types.ModuleType) and not name.startswith("__"):
                    self.protected[name] = value
        return {"event": "done", "outputs": self._outputs(result_repr), "error": error,
                "seconds": round(time.perf_counter() - started, 4)}

    def _test_globals(self) -> dict:
        builtin_names = self.builtin_names
        g = {k: self.ns[k] for k in _str_keys(self.ns) if k not in builtin_names}
        g["__builtins__"] = self.test_builtins
        g.update(self.locked_defs)
        g.update(self.protected)
        return g

    def _tamper(self) -> list[str]:
        """Fingerprint differences; an error here (a submission broke the comparison) counts."""
        try:
            return self.fingerprint.differences(self.ns, self.protected)
        except BaseException as err:  # noqa: BLE001
            return [f"the interpreter is too damaged to compare ({type(err).__name__})"]

    def run_test(self, source: str, label: str, inject: dict | None = None) -> dict:
        """Tamper check, the test, tamper check again. The checks run whatever the test does,
        so a submission that breaks the grader's own reporting is still flagged.
        `inject`: in the judge, the student's values the test reads (see to_data)."""
        started = time.perf_counter()
        tampered = self._tamper()
        g: dict = {}
        try:
            g = self._test_globals()
            if inject:
                g.update({name: from_data(value) for name, value in inject.items() if type(name) is str})
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
        except childio.TestTimeout:
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
        for key in _str_keys(g):  # names a test defines stay visible to later cells
            if key not in self.builtin_names and key != "__builtins__":
                self.ns[key] = g[key]
        tampered += [d for d in self._tamper() if d not in tampered]
        return {"event": "done", "verdict": verdict, "tampered": tampered,
                "audit": list(self.audit_log), "outputs": self._outputs(),
                "seconds": round(time.perf_counter() - started, 4)}


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


# --- entry point (runs in the forked child) -----------------------------------------------

def _seal(channel_fd: int) -> None:
    """Leave nothing of the grader where student code can reach it by ordinary means: this
    module and the fork server's leave sys.modules and the package (their globals would
    otherwise be one import away), and every process the submission forks closes the channel
    (any descriptor open on it, duplicates too) before running anything else."""
    import torchcourse
    for name in ("torchcourse.executor", "torchcourse.zygote"):
        sys.modules.pop(name, None)
        short = name.rsplit(".", 1)[1]
        if short in vars(torchcourse):
            delattr(torchcourse, short)
    os.set_inheritable(channel_fd, False)
    st = os.fstat(channel_fd)
    ident = (st.st_dev, st.st_ino)

    def close_channel(_ident=ident, _listdir=os.listdir, _fstat=os.fstat, _close=os.close) -> None:
        for name in _listdir("/proc/self/fd"):
            try:
                n = int(name)
                info = _fstat(n)
                if (info.st_dev, info.st_ino) == _ident:
                    _close(n)
            except (OSError, ValueError):
                pass

    os.register_at_fork(after_in_child=close_channel)


def child_main(fd: int, args: dict) -> None:
    """Set up the sandbox, then serve cells until told to stop. Never returns.

    `args` (sandbox, limits, env, files, threads, key) is emptied once read, so that the
    key is gone from the fork server's frame too."""
    key = bytes.fromhex(args.pop("key"))
    sandbox, limits, env = args.pop("sandbox"), args.pop("limits"), args.pop("env")
    files, threads = args.pop("files"), args.pop("threads")
    args.clear()
    channel = Channel(fd, key)
    key = None
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
        files = data = None
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
        _apply_dynamo_patches()
        executor = Executor(channel, limits)
        executor.capture_fds()
        _seal(fd)
        channel.send({"event": "ready", "sandbox": kind, "uid": os.getuid()})
    except SandboxError as err:
        channel.send({"event": "sandbox-failed", "reason": str(err)})
        os._exit(3)
    except BaseException as err:  # noqa: BLE001
        channel.send({"event": "sandbox-failed", "reason": f"{type(err).__name__}: {err}"})
        os._exit(3)
    _serve(channel, executor)


def _serve(channel: Channel, executor: Executor) -> None:
    while True:
        try:
            msg = channel.recv()
        except EOFError:
            os._exit(0)
        except BaseException:  # noqa: BLE001  (a command cut short: something else read the channel)
            os._exit(75)
        if msg.get("op") == "exit":
            os._exit(0)
        try:
            result = executor.run(msg)
        except BaseException as err:  # noqa: BLE001  (a submission that broke the executor)
            result = _broken(executor, msg, err)
        msg = None
        channel.send(result)
        if result.get("error") and result["error"].get("exit"):
            os._exit(0)


def _broken(executor: Executor, msg: dict, err: BaseException) -> dict:
    """The reply for a cell the submission kept the executor from running: an error, with
    whatever the fingerprint finds (a damaged interpreter is why, most of the time)."""
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    name = type(err).__name__ if type(type(err).__name__) is str else "error"
    test = msg.get("kind") == "test"
    return {"event": "done", "outputs": [], "seconds": 0,
            "error": None if test else {"ename": name, "evalue": "the grader could not run this cell", "traceback": []},
            "verdict": {"status": "error", "message": f"The grader could not run this cell ({name})."} if test else None,
            "tampered": executor._tamper(), "audit": list(executor.audit_log)}
