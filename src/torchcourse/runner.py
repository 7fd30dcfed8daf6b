"""Run one submission's cells in a sandboxed executor, from the grader's side.

Executors are forked from a fork server (zygote.py) that imported torch once (the
"preload"), so each submission gets a fresh process, never reused across students, that starts
in milliseconds instead of paying a new kernel and a new torch import.

The grader sends one cell at a time and waits for its answer under two deadlines (the cell's
and the notebook's) while watching the resident memory of every process the submission has.
Whatever happens (a timeout, a crash, memory exhausted, sys.exit), the cells that finished keep
their results and the run records why it stopped. Only length-framed JSON comes back from the
child; nothing it sends is ever unpickled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import select
import socket
import struct
import time
from typing import Any, Callable

import psutil

from .config import Profile
from .sandbox import Cgroup, SandboxSpec, python_prefixes
from .zygote import Zygote

_FRAME = struct.Struct("!I")           # to the executor: length
_HEAD = struct.Struct("!IQ")          # from it: length, sequence number (then payload and MAC)
_MAC_SIZE = 16
MAX_AUDIT = 20
MAX_MESSAGE = 16 * 1024 * 1024
POLL_S = 0.1

_zygotes: dict[tuple[str, ...], Zygote] = {}
_zygote_lock = __import__("threading").Lock()


def fork_server(preload: list[str], failed: Zygote | None = None) -> Zygote:
    """The fork server for this preload list (started on first use, shared by all threads).
    `failed`: a server that stopped answering; replaced unless another thread already did."""
    key = tuple(preload)
    with _zygote_lock:
        if failed is not None and _zygotes.get(key) is failed:
            failed.close()
        if key not in _zygotes or _zygotes[key].proc.poll() is not None:
            _zygotes[key] = Zygote(list(preload))
        return _zygotes[key]


@dataclasses.dataclass
class Cell:
    """One cell to run: kind is answer | free | locked | test (markdown cells are not sent)."""
    index: int
    kind: str
    label: str
    source: str


@dataclasses.dataclass
class CellResult:
    index: int
    outputs: list[dict] = dataclasses.field(default_factory=list)
    error: dict | None = None
    verdict: dict | None = None
    tampered: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


@dataclasses.dataclass
class RunResult:
    results: dict[int, CellResult]
    stopped: str | None = None        # None, or timed_out | crashed | out_of_memory | exited | sandbox
    reason: str = ""
    stopped_at: int | None = None     # index of the cell that was running when it stopped
    audit: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (cell index, what)
    protocol_errors: list[str] = dataclasses.field(default_factory=list)
    sandbox: str = ""
    peak_rss_mb: float = 0.0
    seconds: float = 0.0


class ProtocolError(Exception):
    pass


class _Link:
    """The grader's end of the channel: framed JSON with deadlines in both directions.

    Every frame from the executor is signed with the run's key (see executor.Channel); the
    first frame that fails verification, or arrives out of sequence, is a ProtocolError. The
    key was handed to the executor through the fork server and never travels on this socket."""

    def __init__(self, sock: socket.socket, key: bytes) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.buf = b""
        self.key = key
        self.seq = 0

    def send(self, message: dict, deadline: float) -> None:
        """Send, or raise TimeoutError at the deadline: a child that stops reading its end
        must not hold the grader past it."""
        data = json.dumps(message).encode()
        view = memoryview(_FRAME.pack(len(data)) + data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the submission stopped reading the grading channel")
            _, writable, _ = select.select([], [self.sock], [], min(left, POLL_S))
            if not writable:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                raise EOFError from None
            view = view[n:]

    def poll_message(self, timeout: float) -> dict | None:
        """A complete message if one arrives within `timeout`; None if not yet.
        Raises EOFError when the child has gone, ProtocolError on malformed or unsigned data."""
        msg = self._take()
        if msg is not None:
            return msg
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError
        self.buf += chunk
        return self._take()

    def _take(self) -> dict | None:
        if len(self.buf) < _HEAD.size:
            return None
        length, seq = _HEAD.unpack(self.buf[:_HEAD.size])
        if length > MAX_MESSAGE:
            raise ProtocolError(f"a message of {length} bytes (over the {MAX_MESSAGE} limit)")
        end = _HEAD.size + length + _MAC_SIZE
        if len(self.buf) < end:
            return None
        head, data, mac = self.buf[:_HEAD.size], self.buf[_HEAD.size:end - _MAC_SIZE], self.buf[end - _MAC_SIZE:end]
        self.buf = self.buf[end:]
        expected = hashlib.blake2b(head + data, key=self.key, digest_size=_MAC_SIZE).digest()
        if not hmac.compare_digest(mac, expected) or seq != self.seq:
            raise ProtocolError("a frame the executor did not sign (forged by the submission)")
        self.seq += 1
        try:
            msg = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError("data that is not the grader's JSON") from None
        if not isinstance(msg, dict):
            raise ProtocolError("a message that is not a JSON object")
        return _clean(msg)


def _clean(value: Any, depth: int = 0) -> Any:
    """A decoded message with every string made writable (lone surrogates replaced) and
    nothing but JSON types, so that no later step (notebook, gradebook, HTML) can fail on it."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_clean(str(k), depth + 1): _clean(v, depth + 1) for k, v in value.items()}
    return value


def _rss_anon(pid: int) -> int:
    """Anonymous resident memory of a process (its heap, not the libraries it maps)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryWatch:
    """How much memory a submission has added, and whether the kernel killed it for memory.

    With a cgroup this is exact (the kernel charges only pages the submission allocates).
    Without one, it estimates: the anonymous memory of each process above what it inherited
    from the fork server (counting inherited copy-on-write pages once, not once per process)."""

    def __init__(self, pid: int, cgroup: Cgroup | None) -> None:
        self.pid, self.cgroup = pid, cgroup
        self.base = _rss_anon(pid)  # the fork server's heap, inherited by every process below
        self.peak = 0

    def used(self) -> int:
        if self.cgroup is not None:
            value = self.cgroup.usage()
        else:
            try:
                procs = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                procs = []
            value = sum(max(0, _rss_anon(p.pid) - self.base) for p in procs)
        self.peak = max(self.peak, value)
        return value

    def killed_for_memory(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def peak_mb(self) -> float:
        exact = self.cgroup.peak() if self.cgroup is not None else 0
        return (max(self.peak, exact) + self.base) / 1e6


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _kill_tree(pid: int, cgroup: Cgroup | None) -> None:
    """Kill the submission and everything it started, and wait until they are gone."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    # Gone, or a zombie: the fork server reaps its child on the next request (psutil's
    # wait_procs would wait out its whole timeout on a zombie that is not its own child).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(p) for p in procs):
        time.sleep(0.005)
    if cgroup is not None:
        cgroup.destroy()


def sandbox_spec(profile: Profile, hide: list[str], slot: int) -> SandboxSpec:
    return SandboxSpec(
        mode=profile.sandbox, network=profile.network,
        hide=[*hide, *profile.hide], keep=python_prefixes(),
        uid=61000 + slot, memory_mb=profile.memory_mb,
        limit_address_space=profile.device == "cpu",
        max_processes=profile.max_processes, max_file_mb=profile.max_file_mb,
        scratch_mb=profile.scratch_mb, device_visible=profile.device != "cpu",
        cpu_seconds=int(profile.notebook_timeout_s * max(1, profile.threads_per_worker) + 30),
    )


def child_env(profile: Profile) -> dict[str, str]:
    import sys
    env = {
        "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "student", "LOGNAME": "student",
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/.config/matplotlib",
        "XDG_CACHE_HOME": "/tmp/.cache", "TORCH_HOME": "/tmp/.cache/torch",
        "PYTHONUNBUFFERED": "1", "COURSE_DEVICE": profile.device,
        "OMP_NUM_THREADS": str(profile.threads_per_worker),
        "NBGRADER_EXECUTION": "autograde",
    }
    for key in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(profile.env)
    return env


class _Judge:
    """A second sandboxed executor for the tests that need only the student's values
    (Assignment.judged_outside): it runs the notebook's setup cells, then each such test on
    the values the student's process sends, and never runs a line of student code. Started on
    first use; one per submission, never reused."""

    def __init__(self, profile: Profile, hide: list[str], slot: int, files: dict[str, bytes],
                 setup: list[Cell], deadline: float = 0) -> None:
        self.cgroup = (Cgroup.create(f"judge-{os.getpid()}-{slot}-{secrets.token_hex(4)}", profile.memory_mb,
                                     profile.max_processes, cpus=max(1, profile.threads_per_worker))
                       if profile.sandbox != "off" else None)
        spec = dataclasses.asdict(sandbox_spec(profile, hide, slot))
        spec["cgroup_procs"] = self.cgroup.procs_files if self.cgroup else []
        key = secrets.token_bytes(32)
        ours, theirs = socket.socketpair()
        self.zygote = fork_server(profile.preload)
        limits = {"max_output_chars": profile.max_output_kb * 1024,
                  "test_timeout_s": round(profile.cell_timeout_s * 0.8, 3)}
        self.pid = self.zygote.fork(theirs.fileno(), sandbox=spec, limits=limits, env=child_env(profile),
                                    files=files, threads=profile.threads_per_worker, key=key.hex())
        theirs.close()
        self.sock = ours
        self.link = _Link(ours, key)
        self.setup, self.ready = setup, False

    def _start(self, deadline: float) -> None:
        """Wait until the judge is up and has run the setup cells (it starts with the student's
        process and gets ready meanwhile; the first test that needs it waits for the rest)."""
        self._wait("ready", deadline)
        for cell in self.setup:
            self.link.send({"op": "run", "kind": "locked", "label": cell.label, "source": cell.source}, deadline)
            self._wait("done", deadline)
        self.ready = True

    def _wait(self, kind: str, deadline: float) -> dict:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the judge did not answer in time")
            msg = self.link.poll_message(min(POLL_S, left))
            if msg is None or msg.get("event") == "audit":
                continue
            if msg.get("event") == "sandbox-failed":
                raise _SandboxFailed(str(msg.get("reason", "unknown")))
            if msg.get("event") != kind:
                raise ProtocolError(f"an unexpected message from the judge ({str(msg.get('event'))[:40]!r})")
            return msg

    def run(self, cell: Cell, values: dict, deadline: float) -> dict:
        if not self.ready:
            self._start(max(deadline, time.monotonic() + 30))
        self.link.send({"op": "run", "kind": "test", "label": cell.label, "source": cell.source,
                        "inject": values}, deadline)
        return self._wait("done", deadline)

    def close(self) -> None:
        try:
            self.link.send({"op": "exit"}, time.monotonic() + 1)
        except (OSError, EOFError, TimeoutError):
            pass
        _kill_tree(self.pid, self.cgroup)
        self.sock.close()
        _exit_code(self.zygote, self.pid)


def run_cells(
    cells: list[Cell],
    profile: Profile,
    *,
    hide: list[str],
    slot: int = 0,
    files: dict[str, bytes] | None = None,
    on_cell: Callable[[Cell, CellResult], None] | None = None,
    outside: dict[str, list[str]] | None = None,
    setup: list[Cell] | None = None,
) -> RunResult:
    """Run the cells in order in a fresh sandboxed executor; never raises for student faults.

    Tests named in `outside` run in a judge (see _Judge) on the values of the names listed,
    which the student's executor sends by value; `setup` is what the judge runs first."""
    outside = outside or {}
    judge: _Judge | None = None
    if outside and any(c.kind == "test" and c.label in outside for c in cells):
        try:
            judge = _Judge(profile, hide, slot, files or {}, setup or [], 0)
        except (OSError, RuntimeError):
            judge = None  # started again at the first test that needs it
    zygote = fork_server(profile.preload)
    parent_sock, child_sock = socket.socketpair()
    cgroup = (Cgroup.create(f"run-{os.getpid()}-{slot}-{secrets.token_hex(4)}", profile.memory_mb,
                            profile.max_processes, cpus=max(1, profile.threads_per_worker))
              if profile.sandbox != "off" else None)
    spec = dataclasses.asdict(sandbox_spec(profile, hide, slot))
    spec["cgroup_procs"] = cgroup.procs_files if cgroup else []
    limits = {"max_output_chars": profile.max_output_kb * 1024,
              "test_timeout_s": round(profile.cell_timeout_s * 0.8, 3)}  # soft, inside the executor
    key = secrets.token_bytes(32)  # signs every frame the executor sends; never on the channel
    args = dict(sandbox=spec, limits=limits, env=child_env(profile), files=files or {},
                threads=profile.threads_per_worker, key=key.hex())
    try:
        pid = zygote.fork(child_sock.fileno(), **args)
    except (OSError, RuntimeError):  # the fork server died (killed, or out of memory): once more
        zygote = fork_server(profile.preload, failed=zygote)
        pid = zygote.fork(child_sock.fileno(), **args)
    started = time.monotonic()  # after the fork: not the fork server's own start-up
    child_sock.close()
    link = _Link(parent_sock, key)
    result = RunResult(results={})
    memory = MemoryWatch(pid, cgroup)
    notebook_deadline = started + profile.notebook_timeout_s
    memory_limit = profile.memory_mb * 1024 * 1024
    current: Cell | None = None

    def wait_for(kind: str, deadline: float, why_late: str) -> dict:
        """Wait for a message of `kind`, handling audit reports that arrive meanwhile."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(why_late)
            msg = link.poll_message(min(POLL_S, deadline - now))
            if memory.used() > memory_limit or memory.killed_for_memory():
                raise MemoryError(f"used more than {profile.memory_mb} MB of memory")
            if msg is None:
                continue
            event = msg.get("event")
            if event == "audit":
                if len(result.audit) <= MAX_AUDIT:  # the executor's own cap, and its "more" note
                    result.audit.append((current.index if current else -1, str(msg.get("what", "?"))[:200]))
                continue
            if event == "sandbox-failed":
                raise _SandboxFailed(str(msg.get("reason", "unknown")))
            if event != kind:
                raise ProtocolError(f"an unexpected message ({str(event)[:40]!r})")
            return msg

    try:
        ready = wait_for("ready", min(notebook_deadline, time.monotonic() + 60),
                         "the sandbox did not start within 60 s")
        result.sandbox = str(ready.get("sandbox", ""))
        for cell in cells:
            current = cell
            cell_deadline = min(time.monotonic() + profile.cell_timeout_s, notebook_deadline)
            late = (f"cell {cell.label} ran longer than {profile.cell_timeout_s:g} s"
                    if cell_deadline < notebook_deadline else
                    f"the notebook ran longer than {profile.notebook_timeout_s:g} s (in cell {cell.label})")
            try:
                if cell.kind == "test" and cell.label in outside:
                    link.send({"op": "values", "names": outside[cell.label]}, cell_deadline)
                else:
                    link.send({"op": "run", "kind": cell.kind, "label": cell.label, "source": cell.source}, cell_deadline)
            except TimeoutError:
                raise TimeoutError(f"cell {cell.label} could not be sent: the submission stopped reading "
                                   "the grading channel") from None
            msg = wait_for("done", cell_deadline, late)
            if cell.kind == "test" and cell.label in outside:
                values = msg.get("values") if isinstance(msg.get("values"), dict) else {}
                try:
                    if judge is None:
                        judge = _Judge(profile, hide, slot, files or {}, setup or [], 0)
                    msg = judge.run(cell, values, cell_deadline)
                    msg["tampered"] = []  # the judge ran no student code; the student's process is checked later
                except TimeoutError:
                    raise TimeoutError(late) from None
                except (EOFError, ProtocolError, _SandboxFailed, OSError, RuntimeError) as err:
                    if judge is not None:
                        judge.close()
                    judge = None
                    msg = {"verdict": {"status": "error", "message": "The grader's judge could not run this test "
                                       f"({type(err).__name__}); an instructor will look at it."}}
            res = _cell_result(cell, msg)
            result.results[cell.index] = res
            if on_cell:
                on_cell(cell, res)
            err = res.error or {}
            verdict = res.verdict or {}
            if err.get("exit") or verdict.get("exit"):
                result.stopped, result.stopped_at = "exited", cell.index
                result.reason = f"the notebook called sys.exit() in cell {cell.label}; later cells were not run"
                break
            if err.get("memory") or verdict.get("memory"):
                result.stopped, result.stopped_at = "out_of_memory", cell.index
                result.reason = f"cell {cell.label} ran out of memory ({profile.memory_mb} MB limit); later cells were not run"
                break
        current = None
        try:
            link.send({"op": "exit"}, time.monotonic() + 1)
        except (OSError, EOFError, TimeoutError):
            pass
    except TimeoutError as err:
        result.stopped, result.stopped_at, result.reason = "timed_out", _index(current), str(err)
    except MemoryError as err:
        result.stopped, result.stopped_at = "out_of_memory", _index(current)
        result.reason = f"the submission {err}" + (f" in cell {current.label}" if current else "")
    except _SandboxFailed as err:
        result.stopped, result.reason = "sandbox", f"the sandbox could not be set up: {err}"
    except EOFError:
        code = _exit_code(zygote, pid)
        result.stopped_at = _index(current)
        where = f" in cell {current.label}" if current else " before its first cell"
        if memory.killed_for_memory():
            result.stopped = "out_of_memory"
            result.reason = f"the submission used more than {profile.memory_mb} MB of memory{where}"
        else:
            how = _describe_exit(code)
            if code in (-9, 137) and cgroup is None:
                how += " (often memory exhaustion or the CPU-time limit)"
            result.stopped = "crashed"
            result.reason = f"the process running the notebook died{where}: {how}"
    except ProtocolError as err:
        result.stopped, result.stopped_at = "crashed", _index(current)
        result.protocol_errors.append(str(err))
        result.reason = f"the grading channel received {err}; grading stopped"
    finally:
        if judge is not None:
            judge.close()
        result.peak_rss_mb = memory.peak_mb()
        _kill_tree(pid, cgroup)  # the namespace dies with it anyway; this covers sandbox = "off"
        parent_sock.close()
        _exit_code(zygote, pid)  # reap it
    result.seconds = time.monotonic() - started
    return result


class _SandboxFailed(Exception):
    pass





def _index(cell: Cell | None) -> int | None:
    return cell.index if cell else None


def _exit_code(zygote: Zygote, pid: int) -> int | None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        code = zygote.status(pid)
        if code is not None:
            return code
        time.sleep(0.02)
    return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        import signal
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code >= 128:
        import signal
        try:
            return f"killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"exit status {code} (os._exit or a fatal error)"


def _cell_result(cell: Cell, msg: dict) -> CellResult:
    def as_list(value: Any) -> list:
        return value if isinstance(value, list) else []

    outputs = [o for o in as_list(msg.get("outputs")) if isinstance(o, dict)]
    error = msg.get("error") if isinstance(msg.get("error"), dict) else None
    verdict = msg.get("verdict") if isinstance(msg.get("verdict"), dict) else None
    if cell.kind == "test" and verdict is None:
        verdict = {"status": "error", "message": "The grader got no verdict for this test."}
    tampered = [str(t)[:300] for t in as_list(msg.get("tampered"))][:20]
    return CellResult(index=cell.index, outputs=outputs, error=error, verdict=verdict,
                      tampered=tampered, seconds=float(msg.get("seconds", 0) or 0))
