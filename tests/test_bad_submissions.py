"""The bad-submission catalogue: every kind of broken, hostile or tampering submission we could
think of, graded in ONE batch together with good submissions.

Each kind has a defined outcome (status, score, and a phrase the record must contain). Good
submissions must get exactly the grade they get alone, the gradebook must lose nothing, and
nothing may leak out of the sandbox: no hidden file read, no file written outside scratch, no
network, no process left running.

The README's table of kinds and outcomes is rendered from this catalogue; the last test fails
if the README's copy differs (regenerate it with UPDATE_README=1 ./run-tests -k readme).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Callable

import nbformat
import psutil
import pytest

from conftest import ROOT, copy_course, run
from torchcourse.assignment import Assignment
from torchcourse.grading import Gradebook, Submission, grade_batch, grade_notebook, hidden_paths
from torchcourse.mistakes import apply, load_catalogue
from torchcourse.notebooks import grade_id, read_notebook
from torchcourse.config import load_course

# Some kinds are deliberately malformed notebooks: nbformat warns while writing them.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")]
AID = "01_introduction"
MIDDLE = "test-grow-grad"       # bad cells go right after this test cell...
BEFORE_POINTS = 9               # ...so the tests up to it (3 + 1 + 3 + 2 points) must keep their points
FULL = 22
OUTSIDE_FILES = [ROOT / "PWNED", Path("/etc/PWNED"), Path.home() / "PWNED", Path("/var/PWNED")]
# none of these may exist on the host after the batch (world-writable host folders included)
HOST_FILES = OUTSIDE_FILES + [Path("/run/lock/PWNED"), Path("/var/tmp/PWNED"), Path("/dev/shm/PWNED")]
PARTIAL = FULL - 3              # the base of the attacks below: one catalogued mistake (3 points)


def _solution():
    return read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb")


def _release():
    return read_notebook(ROOT / "release" / AID / f"{AID}.ipynb")


def with_cell(code: str, after: str = MIDDLE):
    nb = _solution()
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == after)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def with_answer(gid: str, code: str):
    nb = _solution()
    next(c for c in nb.cells if grade_id(c) == gid).source = code
    return nb


def attack(code: str):
    """A wrong notebook (the first catalogued mistake, worth PARTIAL) with `code` in a cell of
    its own right after the setup: an attack that forged verdicts would score more."""
    course = load_course(ROOT)
    assignment = Assignment.load(course, AID)
    nb = apply(assignment, load_catalogue(course, assignment)[0])
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "setup")
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _edit_cells(fn: Callable):
    nb = _solution()
    fn(nb)
    return nb


def _move_tests_first(nb):
    tests = [c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("grade")]
    others = [c for c in nb.cells if c not in tests]
    nb.cells = others[:1] + tests + others[1:]


def _duplicate_test(nb):
    i = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "test-grow")
    fake = copy.deepcopy(nb.cells[i])
    fake.source = "pass"
    fake.id = "dup-cell"
    nb.cells.insert(2, fake)


def _rename_test(nb):
    cell = next(c for c in nb.cells if grade_id(c) == "test-grow")
    cell.metadata.nbgrader["grade_id"] = "test-grow-renamed"
    cell.source = "pass"


def _answer_to_markdown(nb):
    i = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "grow")
    old = nb.cells[i]
    nb.cells[i] = nbformat.v4.new_markdown_cell(old.source, metadata=old.metadata)


@dataclasses.dataclass
class Kind:
    name: str
    does: str                        # for the README table
    make: Callable[[dict], object]   # ctx -> notebook, or bytes for raw files
    status: str                      # or several, separated by " or ", where a race decides
    says: str = ""                   # phrase in the reason, a flag, a repair, or the outputs
    score: float | None = None       # exact score, when defined
    kept: bool = False               # tests before MIDDLE keep their points, the rest score 0
    check: Callable | None = None    # extra assertions (ctx, record, outputs)
    prepare: Callable | None = None  # (ctx, notebook path): beside or instead of the notebook


def _no_marker(marker):
    def check(ctx, record, outputs):
        assert marker not in outputs, f"{marker} appeared in the outputs"
    return check


def _cells_not_attempted(*gids):
    def check(ctx, record, outputs):
        for gid in gids:
            assert record.cells[gid].status == "not_attempted", (gid, record.cells[gid])
    return check


HIDDEN_READS = """\
paths = {paths!r}
for p in paths:
    try:
        with open(p, "rb") as f:
            f.read(10)
        print("READ-OK", p)
    except OSError as e:
        print("blocked", p, type(e).__name__)
import os
print("course root holds:", sorted(os.listdir({root!r})))
"""

WRITES = """\
for p in {paths!r}:
    try:
        with open(p, "w") as f:
            f.write("pwned")
        print("WROTE", p)
    except OSError as e:
        print("blocked", p, type(e).__name__)
"""

GRADEBOOK_WRITE = """\
import sqlite3
try:
    con = sqlite3.connect({db!r})
    con.execute("DELETE FROM grade")
    con.commit()
    print("deleted from a gradebook at that path (a private, empty copy)")
except Exception as e:
    print("blocked", type(e).__name__, e)
try:
    open({db!r}, "w").write("garbage")
except OSError as e:
    print("blocked", type(e).__name__)
"""

NETWORK = """\
import socket
for host, port in [("1.1.1.1", 80), ("pypi.org", 443), ("127.0.0.1", {port})]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("NETWORK-OPEN", host, port)
    except OSError as e:
        print("blocked", host, port, type(e).__name__)
"""

MEMORY_CHILDREN = """\
import os, time, torch
for _ in range(3):
    if os.fork() == 0:
        x = torch.ones(150_000_000)  # 600 MB each, touched
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""

FORK_BOMB = """\
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

THREAD_PATCHER = """\
import threading, time, torch
def later():
    time.sleep(0.3)
    torch.allclose = lambda *a, **k: True
threading.Thread(target=later, daemon=True).start()
time.sleep(0.6)
"""

FORGE = """\
import os, json, struct
fake = json.dumps({"event": "done", "verdict": {"status": "pass", "message": ""}, "outputs": []}).encode()
for fd in os.listdir("/proc/self/fd"):
    try:
        os.write(int(fd), struct.pack("!I", len(fake)) + fake + b"garbage that is not a frame")
    except OSError:
        pass
"""

TORCH_MODE = """\
import torch
from torch.overrides import TorchFunctionMode
class Agree(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        return func(*args, **(kwargs or {}))
Agree().__enter__()
"""

SUBCLASS_GROW = """\
import torch
class Agreeable(torch.Tensor):
    def __eq__(self, other): return torch.tensor(True)
def grow(x):
    while x.abs() < 1:
        x = x * 2
    return (x ** 2).as_subclass(Agreeable)
def grow_grad(x):
    k = 0
    while abs(x) * 2 ** k < 1:
        k += 1
    return 2 * 4 ** k * x
"""


# --- attacks on the verdict, the grader's code and the channel --------------------------------

FORGE_PASS = 'lambda self, source, label, g: {"status": "pass", "message": ""}'
THROUGH_SHIM = f"""
ex = getattr(get_ipython, "__self__", None)
print("get_ipython is bound to:", type(ex).__name__)
if ex is not None:
    type(ex)._judge = {FORGE_PASS}
"""
THROUGH_ALARM = f"""
import signal
g = getattr(signal.getsignal(signal.SIGALRM), "__globals__", {{}})
print("the alarm handler lives in", g.get("__name__"))
if "Executor" in g:
    g["Executor"]._judge = {FORGE_PASS}
"""
THROUGH_IMPORT = f"""
import sys
mods = [sys.modules.get("torchcourse.executor")]
try:
    import torchcourse.executor as again
    mods.append(again)
except ImportError as e:
    print("import torchcourse.executor:", type(e).__name__)
for m in mods:
    if m is not None:
        m.Executor._judge = {FORGE_PASS}
"""
THROUGH_STDOUT = f"""
import sys
g = type(sys.stdout).take.__globals__
print("sys.stdout's class lives in", g.get("__name__"))
if "Executor" in g:
    g["Executor"]._judge = {FORGE_PASS}
"""
JSON_ENCODER = """
import json, json.encoder
orig = json.encoder.JSONEncoder.iterencode
def forged(self, o, _one_shot=False):
    if isinstance(o, dict) and isinstance(o.get("verdict"), dict):
        o = dict(o, verdict={"status": "pass", "message": ""}, tampered=[], audit=[])
    return orig(self, o, _one_shot)
json.encoder.JSONEncoder.iterencode = forged
json.encoder.c_make_encoder = None
"""
HASH_KEY = """
from torchcourse import checks
real = {n: getattr(checks, n) for n in ("expect", "expect_close", "expect_equal", "expect_tensor")}
class Key(str):
    calls = [0]
    def __hash__(self):  # meant to run inside the grader: patch as tests start, restore as they end
        Key.calls[0] += 1
        for n, f in real.items():
            setattr(checks, n, (lambda *a, **k: None) if Key.calls[0] % 2 else f)
        return str.__hash__(self)
globals()[Key("sneaky")] = 1
"""
EQ_BUILTINS = """
import builtins
class Same(dict):
    def __eq__(self, other):  # meant to run inside the grader's comparison
        return True
    __hash__ = None
__builtins__ = Same(vars(builtins))
"""
CHANNEL_FROM_CHILD = """
import os, json, struct, stat
if os.fork() == 0:  # the child waits for the grader's next command and answers it with a pass
    for fd in range(3, 64):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            n = struct.unpack("!I", os.read(fd, 4))[0]
            msg = json.loads(os.read(fd, n))
            fake = json.dumps({"event": "done", "verdict": {"status": "pass", "message": ""},
                               "outputs": [], "tampered": [], "nonce": msg.get("nonce")}).encode()
            os.write(fd, struct.pack("!IQ", len(fake), 0) + fake + bytes(16))
        except OSError:
            pass
    os._exit(0)
"""
CHANNEL_FROM_THREAD = """
import os, json, struct, stat, threading
def steal():  # reads the grader's commands and answers each with a pass
    for fd in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                break
        except OSError:
            pass
    seq = 0
    while True:
        n = struct.unpack("!I", os.read(fd, 4))[0]
        msg = json.loads(os.read(fd, n))
        fake = json.dumps({"event": "done", "verdict": {"status": "pass", "message": ""}, "outputs": [],
                           "tampered": [], "audit": [], "nonce": msg.get("nonce")}).encode()
        os.write(fd, struct.pack("!IQ", len(fake), seq) + fake + bytes(16))
        seq += 1
threading.Thread(target=steal, daemon=True).start()
"""
TB_FRAME = """
def graph_depth(t):
    try:
        raise RuntimeError
    except RuntimeError as e:
        caller = e.__traceback__.tb_frame.f_back  # the test's frame: rebind its checks
    caller.f_globals["checks"] = type("Yes", (), {"__getattr__": lambda s, n: (lambda *a, **k: None)})()
    return 0
"""
GI_FRAME = """
def graph_depth(t):
    def g():
        yield gen.gi_frame.f_back
    gen = g()
    next(gen).f_back.f_globals["checks"] = None
    return 0
"""
CR_FRAME = """
def graph_depth(t):
    async def c():
        return 1
    co = c()
    frame = co.cr_frame
    co.close()
    return 0
"""
FORGED_FILENAME = """
import inspect
def graph_depth(t):
    exec(compile("import sys\\nf = sys._getframe(2)", inspect.__file__, "exec"), {})
    return 0
"""
TEST_FILENAME = """
def graph_depth(t):
    exec(compile("import sys\\nf = sys._getframe(2)", "<test test-graph-depth>", "exec"), {})
    return 0
"""
AUDIT_HOOK = """
import sys
seen = []
sys.addaudithook(lambda ev, a: seen.append(a[0].co_consts) if ev == "exec" else None)
print("the hook saw", len(seen), "code objects")
"""
AUDIT_HOOK_LATER = "print('the hook saw', len(seen), 'code objects:', str(seen)[:2000])"
LOCAL_SCOPE = """
for depth in (4, 6, 8):
    try:
        get_ipython().run_line_magic("time", "x = 1", _stack_depth=depth)
    except ValueError as e:
        print("refused:", e)
"""
AUDIT_FLOOD = """
import sys
refused = 0
for i in range(20000):
    try:
        sys._getframe()
    except ValueError:
        refused += 1
print("refused", refused, "times")
"""
SECOND_COPY = """
import os
for p in {paths!r}:
    try:
        print("READ-OK", p, open(p).read(20))
    except OSError as e:
        print("blocked", p, type(e).__name__)
"""
SHARED_FOLDER = """
for p in ["/run/lock/PWNED", "/var/tmp/PWNED", "/dev/shm/PWNED"]:
    try:
        with open(p, "w") as f:
            f.write("answers for the next student")
        print("wrote", p, "(a private scratch copy, or refused)")
    except OSError as e:
        print("blocked", p, type(e).__name__)
"""
USER_NAMESPACE = """
import subprocess
for cmd in (["unshare", "--user", "--map-root-user", "id"], ["unshare", "--mount", "true"]):
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(cmd[1], "->", r.returncode, (r.stdout + r.stderr).strip())
"""


def _symlink_to(target: Callable[[dict], Path]):
    def prepare(ctx, path):
        path.unlink()
        path.symlink_to(target(ctx))
    return prepare


def _hard_link_to(target: Callable[[dict], Path]):
    def prepare(ctx, path):
        path.unlink()
        os.link(target(ctx), path)
    return prepare


def _timestamp(text: str):
    def prepare(ctx, path):
        (path.parent / "timestamp.txt").write_text(text)
    return prepare


YES_PREDICTIONS = """
class Yes(float):
    def __eq__(self, other):
        return True
    __hash__ = float.__hash__
    def __sub__(self, other):
        return 0.0
    __rsub__ = __sub__
predictions = {"c.requires_grad": Yes(1), "a.grad": Yes(0), "b.grad": Yes(0)}
"""
PATCH_BEFORE_PREDICTIONS = """
from torchcourse import checks
for name in ("expect", "expect_close", "expect_equal", "expect_tensor"):
    setattr(checks, name, lambda *a, **k: None)
"""


def _judged_outside(gid: str, message: str):
    """The prediction test ran in the judge, on the student's values: its own verdict stands."""
    def check(ctx, record, outputs):
        cell = record.cells[gid]
        assert cell.status == "fail" and message in cell.message, cell
    return check


def _flags_bounded(ctx, record, outputs):
    assert len(record.flags) <= 25, f"{len(record.flags)} flags"


def _forged_nothing(ctx, record, outputs):
    assert record.score < PARTIAL, record.score


def _secrets(ctx: dict) -> list[str]:
    """Files no submission may read: the course's private parts, another student, the home."""
    return [str(ROOT / "source" / AID / f"{AID}.ipynb"), str(ROOT / "solutions" / AID / f"{AID}.ipynb"),
            ctx["db"], str(ROOT / "course_config.py"), str(ROOT / "graders" / "cpu.toml"),
            str(ROOT / "src" / "torchcourse" / "grading.py"),
            str(ctx["submissions"] / "good-solution" / AID / f"{AID}.ipynb"),
            str(Path.home() / ".bashrc"), "/etc/shadow"]


def catalogue() -> list[Kind]:
    """Every kind, each made from the batch's context (paths, the loopback port) when graded."""
    kinds = [
        # --- not a gradable notebook -------------------------------------------------------------
        Kind("corrupt JSON", "a notebook cut off mid-file", lambda c: b'{"cells": [', "invalid", "not valid JSON", 0),
        Kind("empty file", "a zero-byte file", lambda c: b"", "invalid", "not valid JSON", 0),
        Kind("not UTF-8", "binary garbage", lambda c: bytes(range(256)) * 8, "invalid", "not UTF-8", 0),
        Kind("JSON, not a notebook", "a JSON list", lambda c: b"[1, 2, 3]", "invalid", "not a Jupyter notebook", 0),
        Kind("old notebook format", "nbformat 3", lambda c: b'{"nbformat": 3, "cells": []}', "invalid", "format 3", 0),
        Kind("a stranger's notebook", "cells of no assignment of this course",
             lambda c: nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), "invalid",
             "none of the answer or test cells", 0),
        Kind("huge file", "a 6 MB notebook (limit 5 MB)",
             lambda c: b'{"cells": [], "nbformat": 4, "x": "' + b"a" * 6_000_000 + b'"}', "invalid", "over the 5 MB limit", 0),
        # --- edited structure: repaired from the source ------------------------------------------
        Kind("deleted test cells", "every test cell removed",
             lambda c: _edit_cells(lambda nb: setattr(nb, "cells", [x for x in nb.cells if not (x.metadata.get("nbgrader") or {}).get("grade")])),
             "graded", "were deleted; they were restored", FULL),
        Kind("edited test cell", "test-grow replaced by `pass`",
             lambda c: _edit_cells(lambda nb: setattr(next(x for x in nb.cells if grade_id(x) == "test-grow"), "source", "pass")),
             "graded", "test cell test-grow was edited", FULL),
        Kind("reordered cells", "all test cells moved to the top", lambda c: _edit_cells(_move_tests_first),
             "graded", "source's order was restored", FULL),
        Kind("duplicated test cell", "a copy of test-grow (emptied) placed first", lambda c: _edit_cells(_duplicate_test),
             "graded", "appeared more than once", FULL),
        Kind("renamed test cell", "test-grow's id changed, its code emptied", lambda c: _edit_cells(_rename_test),
             "graded", "not part of 01_introduction", FULL),
        Kind("deleted answer cell", "the cell defining grow removed",
             lambda c: _edit_cells(lambda nb: setattr(nb, "cells", [x for x in nb.cells if grade_id(x) != "grow"])),
             "graded", "its stub was put back", None, check=_cells_not_attempted("test-grow-sanity", "test-grow")),
        Kind("answer cell made markdown", "the grow cell turned into markdown", lambda c: _edit_cells(_answer_to_markdown),
             "graded", "graded as its stub", None, check=_cells_not_attempted("test-grow-sanity")),
        # --- runs too long, too big, or dies -----------------------------------------------------
        Kind("endless loop", "`while True: pass` in a cell", lambda c: with_cell("while True:\n    pass"),
             "timed_out", "ran longer than 4 s", BEFORE_POINTS, kept=True),
        Kind("endless loop in a test", "graph_depth never returns: its tests fail, the rest are graded",
             lambda c: with_answer("graph-depth", "def graph_depth(t):\n    while True:\n        pass"),
             "graded", "did not finish in 3.2 s", FULL - 3),
        Kind("endless loop that swallows the timeout", "graph_depth loops and catches every exception",
             lambda c: with_answer("graph-depth", "def graph_depth(t):\n    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass"),
             "timed_out", "cell test-graph-depth-sanity ran longer", BEFORE_POINTS, kept=True),
        Kind("sleeps forever", "`time.sleep(10**6)`", lambda c: with_cell("import time\ntime.sleep(10**6)"),
             "timed_out", "ran longer than 4 s", BEFORE_POINTS, kept=True),
        Kind("slow notebook", "cells of 3 s each, over the 15 s notebook limit",
             lambda c: _slow_notebook(),
             "timed_out", "notebook ran longer than 15 s", BEFORE_POINTS, kept=True),
        Kind("memory bomb", "one 400 GB tensor", lambda c: with_cell("import torch\nx = torch.empty(10**11)"),
             "out_of_memory", "1024 MB", BEFORE_POINTS, kept=True),
        Kind("growing memory", "appends 40 MB tensors until it fails",
             lambda c: with_cell("import torch\nxs = []\nwhile True:\n    xs.append(torch.ones(10**7))"),
             "out_of_memory", "1024 MB", BEFORE_POINTS, kept=True),
        Kind("memory in child processes", "3 forked children of 600 MB each",
             lambda c: with_cell(MEMORY_CHILDREN), "out_of_memory", "used more than 1024 MB", BEFORE_POINTS, kept=True),
        Kind("fork bomb", "forks in an endless loop", lambda c: with_cell(FORK_BOMB),
             "timed_out", "ran longer than 4 s", BEFORE_POINTS, kept=True),
        Kind("os._exit", "`os._exit(0)` in a cell", lambda c: with_cell("import os\nos._exit(0)"),
             "crashed", "died in cell added-1", BEFORE_POINTS, kept=True),
        Kind("sys.exit", "`sys.exit(1)` in a cell", lambda c: with_cell("import sys\nsys.exit(1)"),
             "crashed", "called sys.exit()", BEFORE_POINTS, kept=True),
        Kind("sys.exit inside a test", "graph_depth calls sys.exit",
             lambda c: with_answer("graph-depth", "import sys\ndef graph_depth(t):\n    sys.exit(0)"),
             "crashed", "called sys.exit()", BEFORE_POINTS, kept=True),
        Kind("segfault", "the interpreter crashes (SIGSEGV)", lambda c: with_cell("import faulthandler\nfaulthandler._sigsegv()"),
             "crashed", "killed by SIGSEGV", BEFORE_POINTS, kept=True),
        Kind("kills its process group", "`os.kill(0, SIGKILL)`", lambda c: with_cell("import os, signal\nos.kill(0, signal.SIGKILL)"),
             "crashed", "killed by SIGKILL", BEFORE_POINTS, kept=True),
        Kind("kills every process it can", "`os.kill(-1, SIGKILL)`: only its own, in its PID namespace",
             lambda c: with_cell("import os, signal\nos.kill(-1, signal.SIGKILL)"), "graded", "", FULL),
        Kind("leaves a process behind", "starts `sleep 600` in the background",
             lambda c: with_cell("import subprocess\nsubprocess.Popen(['sleep', '600'])"), "graded", "", FULL),
        Kind("huge output", "prints 50 MB", lambda c: with_cell("print('x' * 50_000_000)"),
             "graded", "were cut by the grader", FULL),
        Kind("huge output below Python", "writes 20 MB straight to file descriptor 1",
             lambda c: with_cell("import os\nos.write(1, b'y' * 20_000_000)"), "graded", "more bytes of output were cut", FULL),
        Kind("fills the disk", "writes 1 GB into /tmp (64 MB scratch)",
             lambda c: with_cell("with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'z' * 2**20)"),
             "graded", "File too large", FULL),
        Kind("reads stdin", "calls input()", lambda c: with_cell("name = input('name? ')"), "graded", "EOF when reading a line", FULL),
        Kind("deep recursion", "recurses until RecursionError",
             lambda c: with_cell("def f(n):\n    return f(n + 1)\nf(0)"), "graded", "maximum recursion depth", FULL),
        # --- escapes: network, files, privileges --------------------------------------------------
        Kind("network", "connects to the internet and to a server on the grader's loopback",
             lambda c: with_cell(NETWORK.format(port=c["port"])), "graded", "blocked", FULL, check=_no_marker("NETWORK-OPEN")),
        Kind("reads hidden files", "source, solutions, gradebook, config, grader code, another student, home",
             lambda c: with_cell(HIDDEN_READS.format(paths=_secrets(c), root=str(ROOT))), "graded", "course root holds: ['.venv']",
             FULL, check=_no_marker("READ-OK")),
        Kind("writes the gradebook", "deletes every grade with sqlite3, then overwrites the file",
             lambda c: with_cell(GRADEBOOK_WRITE.format(db=c["db"])), "graded", "", FULL),
        Kind("writes outside scratch", "writes into the course root, /etc, home, /var",
             lambda c: with_cell(WRITES.format(paths=[str(p) for p in OUTSIDE_FILES])), "graded", "blocked", FULL,
             check=_no_marker("WROTE")),
        Kind("becomes root", "setuid(0), then mount", lambda c: with_cell(
            "import os, ctypes\ntry:\n    os.setuid(0)\nexcept OSError as e:\n    print('blocked', e)"),
             "graded", "blocked", FULL),
        # --- tampering with what the tests rely on -----------------------------------------------
        Kind("patches a torch function", "`torch.allclose = lambda *a, **k: True`",
             lambda c: with_cell("import torch\ntorch.allclose = lambda *a, **k: True"),
             "flagged", "torch.allclose was replaced", BEFORE_POINTS, kept=True),
        Kind("patches a Tensor method", "`torch.Tensor.__eq__` replaced",
             lambda c: with_cell("import torch\ntorch.Tensor.__eq__ = lambda a, b: True"),
             "flagged", "Tensor.__eq__ was added", BEFORE_POINTS, kept=True),
        Kind("deletes a torch function", "`del torch.nn.functional.relu`",
             lambda c: with_cell("import torch.nn.functional as F\ndel F.relu"),
             "flagged", "relu was deleted", BEFORE_POINTS, kept=True),
        Kind("patches the checks helpers", "`checks.expect_close` made a no-op",
             lambda c: with_cell("from torchcourse import checks\nchecks.expect_close = lambda *a, **k: None"),
             "flagged", "expect_close was replaced", BEFORE_POINTS, kept=True),
        Kind("replaces a builtin", "`builtins.isinstance = lambda *a: True`",
             lambda c: with_cell("import builtins\nbuiltins.isinstance = lambda *a: True"),
             "flagged", "builtins.isinstance was replaced", BEFORE_POINTS, kept=True),
        Kind("replaces AssertionError", "builtins.AssertionError swapped for a harmless class",
             lambda c: with_cell("import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})"),
             "flagged", "AssertionError was replaced", BEFORE_POINTS, kept=True),
        Kind("shadows builtins", "`isinstance`, `len` and `abs` redefined as notebook globals",
             lambda c: with_cell("isinstance = lambda *a: True\nlen = lambda x: 3\nabs = lambda x: 0"),
             "graded", "", FULL),
        Kind("replaces __builtins__", "`__builtins__ = {...}` in the notebook",
             lambda c: with_cell("import builtins\n__builtins__ = dict(vars(builtins), isinstance=lambda *a: True)"),
             "flagged", "__builtins__ was replaced", BEFORE_POINTS, kept=True),
        Kind("rebinds a setup name", "`checks` rebound to an object that accepts everything",
             lambda c: with_cell("class Yes:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\nchecks = Yes()"),
             "flagged", "the name 'checks'", BEFORE_POINTS, kept=True),
        Kind("trace function", "`sys.settrace(...)`", lambda c: with_cell("import sys\nsys.settrace(lambda *a: None)"),
             "flagged", "sys.settrace", BEFORE_POINTS, kept=True),
        Kind("import hook", "a finder inserted in sys.meta_path",
             lambda c: with_cell("import sys\nclass F:\n    def find_spec(self, *a):\n        return None\nsys.meta_path.insert(0, F())"),
             "flagged", "sys.meta_path", BEFORE_POINTS, kept=True),
        Kind("torch function mode", "a TorchFunctionMode answering True to allclose, left active",
             lambda c: with_cell(TORCH_MODE), "flagged", "TorchFunctionMode", BEFORE_POINTS, kept=True),
        Kind("patches from a thread", "a background thread patches torch.allclose later",
             lambda c: with_cell(THREAD_PATCHER), "flagged", "torch.allclose was replaced", BEFORE_POINTS, kept=True),
        Kind("frame introspection", "an answer reads its caller's frame",
             lambda c: with_answer("graph-depth", "import sys\ndef graph_depth(t):\n    sys._getframe(1).f_locals\n    return 0"),
             "flagged", "frame introspection", BEFORE_POINTS, kept=True),
        Kind("walks the heap", "`gc.get_objects()`", lambda c: with_cell("import gc\nobjs = gc.get_objects()"),
             "flagged", "gc.get_objects", BEFORE_POINTS, kept=True),
        Kind("ctypes", "reads raw memory with ctypes",
             lambda c: with_cell("import ctypes\nctypes.string_at(id(1), 8)"),
             "flagged", "ctypes", BEFORE_POINTS, kept=True),
        Kind("forges the grading channel", "writes fake verdicts to every open file descriptor",
             lambda c: with_cell(FORGE), "flagged", "grading channel received", BEFORE_POINTS, kept=True),
        Kind("closes the grading channel", "`os.closerange(3, 1024)`", lambda c: with_cell("import os\nos.closerange(3, 1024)"),
             "crashed", "died in cell added-1", BEFORE_POINTS, kept=True),
        Kind("tensor subclass as an answer", "grow returns a Tensor subclass whose == is always true",
             lambda c: with_answer("grow", SUBCLASS_GROW), "graded", "tensor subclass", None),
        Kind("IPython input transformer", "blanks every later cell (tests bypass IPython)",
             lambda c: with_cell("get_ipython().input_transformers_post.append(lambda lines: [])"), "graded", "", FULL),
        Kind("IPython event hook", "a pre_run_cell hook (never called for tests)",
             lambda c: with_cell("get_ipython().events.register('pre_run_cell', lambda *a: None)"), "graded", "", FULL),
        # --- the verdict out of reach (the base is a wrong notebook worth 19: a forged pass shows) ---
        Kind("reaches the executor through get_ipython", "patches the executor's judge via the notebook's IPython shim",
             lambda c: attack(THROUGH_SHIM), "graded", "bound to: NoneType", PARTIAL),
        Kind("reaches the executor through the alarm handler", "patches the judge via the SIGALRM handler's globals",
             lambda c: attack(THROUGH_ALARM), "graded", "lives in torchcourse.childio", PARTIAL),
        Kind("imports the executor", "patches torchcourse.executor found in sys.modules or re-imported",
             lambda c: attack(THROUGH_IMPORT), "graded", "ModuleNotFoundError", PARTIAL),
        Kind("reaches the executor through sys.stdout", "patches the judge via the capture stream's class",
             lambda c: attack(THROUGH_STDOUT), "graded", "lives in torchcourse.childio", PARTIAL),
        Kind("rewrites the JSON encoder", "json's encoder turns every verdict into a pass",
             lambda c: attack(JSON_ENCODER), "graded", "", PARTIAL),
        Kind("a name whose __hash__ runs in the grader", "a str subclass in globals patches checks when hashed",
             lambda c: attack(HASH_KEY), "flagged", "checks.expect was replaced", 0),
        Kind("__builtins__ whose __eq__ says yes", "an object equal to everything planted as __builtins__",
             lambda c: attack(EQ_BUILTINS), "flagged", "__builtins__ was replaced", 0),
        Kind("answers for the grader from a forked child", "a child process reads the next command and replies 'pass'",
             lambda c: attack(CHANNEL_FROM_CHILD), "graded", "", PARTIAL),
        Kind("answers for the grader from a thread", "a thread steals commands and replies 'pass' (unsigned)",
             lambda c: attack(CHANNEL_FROM_THREAD), "crashed or flagged", "", None, check=_forged_nothing),
        Kind("frames through a traceback", "graph_depth rebinds the test's checks via tb_frame.f_back",
             lambda c: with_answer("graph-depth", TB_FRAME), "flagged", "tb_frame", BEFORE_POINTS, kept=True),
        Kind("frames through a generator", "graph_depth climbs to the test via gi_frame",
             lambda c: with_answer("graph-depth", GI_FRAME), "flagged", "gi_frame", BEFORE_POINTS, kept=True),
        Kind("frames through a coroutine", "graph_depth reads a coroutine's cr_frame",
             lambda c: with_answer("graph-depth", CR_FRAME), "flagged", "cr_frame", BEFORE_POINTS, kept=True),
        Kind("code under a library's file name", "compile() names its code inspect.py, then reads frames",
             lambda c: with_answer("graph-depth", FORGED_FILENAME), "flagged", "under a library's or the grader's file name",
             BEFORE_POINTS, kept=True),
        Kind("code under a test's file name", "compile() names its code like a test cell",
             lambda c: with_answer("graph-depth", TEST_FILENAME), "flagged", "under a library's or the grader's file name",
             BEFORE_POINTS, kept=True),
        Kind("an audit hook of its own", "a hook to read every test's code object as it runs",
             lambda c: _two_cells(AUDIT_HOOK, AUDIT_HOOK_LATER), "flagged", "a new audit hook", BEFORE_POINTS, kept=True,
             check=_no_marker("co_consts")),
        Kind("frames through logging", "`logging.currentframe()` hands back a frame",
             lambda c: with_cell("import logging\nf = logging.currentframe()"), "flagged", "sys._getframe",
             BEFORE_POINTS, kept=True),
        Kind("IPython's local scope at a chosen depth", "run_line_magic with a deep _stack_depth (refused quietly)",
             lambda c: with_cell(LOCAL_SCOPE), "graded", "not available", FULL),
        Kind("reads /proc/self/mem", "opens its own memory to rewrite the grader's",
             lambda c: with_cell("open('/proc/self/mem', 'rb')"), "flagged", "/proc/.../mem", BEFORE_POINTS, kept=True),
        Kind("reads a function's code", "`f.__code__`, the way to hand-made code objects",
             lambda c: with_cell("c = (lambda: 0).__code__"), "flagged", "__code__", BEFORE_POINTS, kept=True),
        Kind("floods the audit", "20,000 refused frame requests",
             lambda c: with_cell(AUDIT_FLOOD), "flagged", "further reports were dropped", BEFORE_POINTS, kept=True,
             check=_flags_bounded),
        Kind("predictions that equal everything", "a float subclass whose == and - always agree",
             lambda c: with_answer("predictions", YES_PREDICTIONS), "graded", "not what PyTorch does", PARTIAL,
             check=_judged_outside("test-predictions", "not what PyTorch does")),
        Kind("checks patched before a prediction test", "every checks.expect* a no-op, wrong predictions",
             lambda c: attack(PATCH_BEFORE_PREDICTIONS), "flagged", "checks.expect was replaced", 0,
             check=_judged_outside("test-predictions", "Your prediction for b.grad is not what PyTorch reports")),
        # --- one submission must not cost another its grade --------------------------------------
        Kind("a lone surrogate in its output", "prints half a UTF-16 pair", lambda c: with_cell('print("half a pair: \\ud800!")'),
             "graded", "half a pair", FULL),
        Kind("junk timestamp.txt", "a timestamp nbgrader cannot parse beside the notebook", lambda c: _solution(),
             "graded", "timestamp.txt is not a date", FULL, prepare=_timestamp("yesterday, more or less")),
        Kind("stops itself", "SIGSTOP in a cell: the grader's deadline still holds",
             lambda c: with_cell("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)"), "timed_out", "ran longer than 4 s",
             BEFORE_POINTS, kept=True),
        # --- files: an allow-list, not a deny-list -----------------------------------------------
        Kind("a symbolic link to the source", "the submitted notebook links to source/ (hidden tests, solutions)",
             lambda c: _solution(), "invalid", "symbolic link", 0,
             prepare=_symlink_to(lambda c: ROOT / "source" / AID / f"{AID}.ipynb")),
        Kind("a hard link to the solution", "the submitted notebook is another name of solutions/'s file",
             lambda c: _solution(), "invalid", "hard link", 0, prepare=_hard_link_to(lambda c: c["copy"] / "solution.ipynb")),
        Kind("a world-writable host folder", "leaves answers in /run/lock and /var/tmp for another student",
             lambda c: with_cell(SHARED_FOLDER), "graded", "", FULL, check=_no_marker("READ-OK")),
        Kind("a second copy of the course", "reads the source and gradebook of another clone on the machine",
             lambda c: with_cell(SECOND_COPY.format(paths=[str(c["copy"] / "source.ipynb"), str(c["copy"] / "gradebook.db")])),
             "graded", "blocked", FULL, check=_no_marker("READ-OK")),
        Kind("a user namespace of its own", "`unshare --user` and `unshare --mount`", lambda c: with_cell(USER_NAMESPACE),
             "graded", "Operation not permitted", FULL, check=_no_marker("uid=0")),
        Kind("magics", "`%timeit` and `!echo`: ordinary notebook use, not an attack",
             lambda c: with_cell("%timeit -n1 -r1 sum(range(10))\n!echo hello from a shell"), "graded", "hello from a shell", FULL),
    ]
    if OTHER is not None:
        kinds.append(Kind("another assignment's notebook", "the release of a different assignment",
                          lambda c: read_notebook(ROOT / "release" / OTHER / f"{OTHER}.ipynb"), "invalid",
                          "this is a notebook of assignment", 0))
    return kinds


# Another assignment whose release exists, for the "wrong assignment" kind.
OTHER = next((a for a in sorted(p.name for p in (ROOT / "release").iterdir())
              if a != AID and (ROOT / "release" / a / f"{a}.ipynb").is_file()), None)
KINDS = catalogue()


def _two_cells(first: str, second: str):
    nb = with_cell(first)
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "test-graph-depth-sanity")
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(second))
    return nb


def _slow_notebook():
    nb = _solution()
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == MIDDLE)
    for n in range(6):
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell("import time\ntime.sleep(3)"))
    return nb


GOOD = {
    "good-solution": lambda: _solution(),
    "good-blank": lambda: _release(),
    "good-partial": lambda: None,  # filled in from the catalogue of mistakes
}


def _serve_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)

    def accept():  # until the batch closes the server: a connection here would mean an open network
        try:
            while True:
                server.accept()[0].close()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def batch(tmp_path_factory, course, profile):
    tmp = tmp_path_factory.mktemp("bad")
    db = str(tmp / "gradebook.db")
    built = copy_course(tmp / "course")
    assert run(["course", "build", AID], cwd=built, env={"COURSE_DB_URL": f"sqlite:///{db}"}).returncode == 0
    os.environ["COURSE_DB_URL"] = f"sqlite:///{db}"
    try:
        assignment = Assignment.load(course, AID)
        server = _serve_loopback()
        subs_dir = tmp / "submitted"
        # another clone of the course on this machine, outside every folder the grader hides
        copy = Path(f"/srv/torchcourse-copy-{os.getpid()}")
        copy.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "source" / AID / f"{AID}.ipynb", copy / "source.ipynb")
        shutil.copy(ROOT / "solutions" / AID / f"{AID}.ipynb", copy / "solution.ipynb")
        shutil.copy(db, copy / "gradebook.db") if os.path.exists(db) else (copy / "gradebook.db").write_text("grades")
        os.chmod(copy, 0o755)
        for f in copy.iterdir():
            os.chmod(f, 0o644)
        ctx = {"root": ROOT, "db": db, "port": server.getsockname()[1], "submissions": subs_dir, "copy": copy}
        strict = dataclasses.replace(profile, cell_timeout_s=4, notebook_timeout_s=15, memory_mb=1024,
                                     max_processes=32, max_output_kb=64, max_file_mb=8, scratch_mb=64,
                                     max_notebook_mb=5, workers=2)
        kinds = KINDS
        partial = apply(assignment, load_catalogue(course, assignment)[0])
        goods = {"good-solution": _solution(), "good-blank": _release(), "good-partial": partial}
        alone = {name: grade_notebook(assignment, nb, name, strict, hide=hidden_paths(course)).record
                 for name, nb in goods.items()}
        submissions = []
        for i, kind in enumerate(kinds):
            student = f"bad-{i:02d}"
            path = subs_dir / student / AID / f"{AID}.ipynb"
            path.parent.mkdir(parents=True)
            made = kind.make(ctx)
            if isinstance(made, bytes):
                path.write_bytes(made)
            else:
                nbformat.write(made, str(path))
            if kind.prepare:
                kind.prepare(ctx, path)
            submissions.append(Submission(student, path))
        for name, nb in goods.items():
            path = subs_dir / name / AID / f"{AID}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(nb, str(path))
            submissions.append(Submission(name, path))
        records = grade_batch(course, assignment, submissions, strict, workers=2,
                              hide_extra=[subs_dir], output_root=tmp / "out")
        server.close()
        by_student = {r.student: r for r in records}
        stored = {r.student: r for r in Gradebook(course).current(AID)}
        yield {"kinds": kinds, "records": by_student, "stored": stored, "alone": alone,
               "out": tmp / "out", "submissions": submissions, "db": db}
    finally:
        os.environ.pop("COURSE_DB_URL", None)
        shutil.rmtree(f"/srv/torchcourse-copy-{os.getpid()}", ignore_errors=True)


def _outputs(out: Path, student: str) -> str:
    path = out / "autograded" / student / AID / f"{AID}.ipynb"
    if not path.is_file():
        return ""
    nb = read_notebook(path)
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(str(o.get("text", "")) + str(o.get("evalue", "")) + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_catalogue_is_large_enough(batch):
    assert len(batch["kinds"]) >= 25


@pytest.mark.parametrize("index", range(len(KINDS)), ids=[k.name for k in KINDS])
def test_each_bad_submission_gets_its_outcome(batch, index):
    kind = batch["kinds"][index]
    record = batch["records"][f"bad-{index:02d}"]
    outputs = _outputs(batch["out"], record.student)
    where = f"{kind.name}: status {record.status}, score {record.score}, reason {record.reason!r}, flags {record.flags}"
    assert record.status in kind.status.split(" or "), where
    if kind.says:
        text = " ".join([record.reason, *record.flags, *record.repairs, *(c.message for c in record.cells.values()), outputs])
        assert kind.says in text, where
    if kind.score is not None:
        assert record.score == kind.score, where
    if kind.kept:
        tests = list(record.cells)
        middle = tests.index(MIDDLE)
        assert all(record.cells[t].points == record.cells[t].max_points for t in tests[:middle + 1]), where
        assert all(record.cells[t].points == 0 for t in tests[middle + 1:]), where
    if kind.check:
        kind.check(batch, record, outputs)


def test_good_submissions_get_the_grade_they_get_alone(batch):
    for name, alone in batch["alone"].items():
        graded = batch["records"][name]
        assert {g: c.points for g, c in graded.cells.items()} == {g: c.points for g, c in alone.cells.items()}, name
        assert graded.status == alone.status == "graded"


def test_gradebook_loses_nothing(batch):
    assert set(batch["stored"]) == {s.student for s in batch["submissions"]}
    for student, record in batch["records"].items():
        assert batch["stored"][student].score == record.score, student
    from nbgrader.api import Gradebook as NbGradebook
    with NbGradebook(f"sqlite:///{batch['db']}") as gb:
        assert gb.find_submission(AID, "good-solution").score == FULL
        assert len(gb.assignment_submissions(AID)) == len(batch["submissions"])


def _our_sandboxed_processes() -> list[dict]:
    """Processes in cgroups this test process created (named run-<pid>-...), so that other
    graders running on the same machine do not count."""
    mine = f"/torchcourse/run-{os.getpid()}-"
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            with open(f"/proc/{p.pid}/cgroup") as f:
                if mine in f.read():
                    found.append(p.info)
        except OSError:
            pass
    return found


def test_nothing_escaped_to_the_host(batch):
    for path in HOST_FILES:
        assert not path.exists(), f"a submission wrote {path}"
    stray = _our_sandboxed_processes()
    assert not stray, f"processes of graded submissions are still running: {stray[:5]}"


def render_table(kinds: list[Kind], records: dict) -> str:
    lines = ["| kind of bad submission | what it does | outcome | the record says |", "|---|---|---|---|"]
    for i, kind in enumerate(kinds):
        r = records[f"bad-{i:02d}"]
        kept = " (earlier tests keep their points)" if kind.kept else ""
        says = kind.says.replace("|", "\\|") if kind.says else "-"
        outcome = (f"{kind.status}, below {PARTIAL:g}/{r.max_score:g}" if " or " in kind.status  # a race decides
                   else f"{r.status}, {r.score:g}/{r.max_score:g}{kept}")
        lines.append(f"| {kind.name} | {kind.does.replace('|', '/')} | {outcome} | {says} |")
    return "\n".join(lines)


def test_readme_table_matches_the_catalogue(batch):
    table = render_table(batch["kinds"], batch["records"])
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bad-submissions:start -->", "<!-- bad-submissions:end -->"
    block = f"{start}\n{table}\n{end}"
    if os.environ.get("UPDATE_README"):
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
        readme.write_text(text)
    assert block in text, "README's bad-submission table is out of date: UPDATE_README=1 ./run-tests -k readme"
