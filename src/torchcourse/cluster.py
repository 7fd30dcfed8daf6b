"""`course grade --cluster ADDRESS`: the same grader, run by the workers of a Dask cluster.

The instructor's process (the client) connects to a Dask scheduler, checks that its workers
run the same grader code, and submits one task per submission. A task runs `grade_remote` on a
worker, which calls the very `grade_notebook` that local grading calls: same fork server (one
per preload list and worker process, started on first use), same sandbox, same profile. Only
bytes and JSON cross the network: the assignment as notebook JSON text and its data files'
bytes (sent once per batch, as one task result that workers share), the submission's raw
bytes, the profile and the folders to hide as plain dicts and lists; back come the record
(Record.to_json) and the graded notebook as JSON text. No student object is ever pickled: the
student's code only ever runs in the sandboxed child, whose results reach the worker as
length-framed JSON.

The gradebook stays with the instructor: `grade_batch` writes each result as it arrives, from
its one writer loop. Faults:
- a worker that dies (killed, its node lost) has its tasks rescheduled by Dask on the others;
  a future completes once, so each submission is written once;
- a submission whose task was on every worker that died while running it, more than the
  scheduler's `allowed-failures` times (3 by default), is recorded as crashed;
- a lost scheduler ends the batch with a CourseError; what was written stays written.
"""
from __future__ import annotations

import base64
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from .config import CourseError, Profile

CONNECT_TIMEOUT_S = 5.0      # an unreachable scheduler is reported after this long
WORKERS_TIMEOUT_S = 60.0     # how long to wait for a first suitable worker to join
WINDOW = 64                  # submissions in flight at least (4 per worker when there are more workers)
ADDRESS = re.compile(r"^(tcp|tls|ws|wss)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
LOCAL = "local"              # `--cluster local`: grade on this machine even if the profile names a cluster


def check_address(address: str, where: str = "--cluster") -> str:
    """A scheduler address, tcp://HOST:PORT (or tls://, ws://, wss://); CourseError if not."""
    address = address.strip()
    m = ADDRESS.match(address)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise CourseError(f"{where}: {address!r} is not a Dask scheduler address "
                          "(expected tcp://HOST:PORT, for example tcp://127.0.0.1:8786)")
    return address


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the grader's own code: the instructor and every worker must agree on it,
    since the same grader must give the same scores, statuses and messages everywhere.
    Computed once per process."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# --- what a worker is sent: the assignment as JSON and bytes ------------------------------------

def assignment_payload(assignment) -> dict:
    """The assignment as plain data: notebook JSON text, data files (base64), grade ids."""
    import nbformat

    data = {
        "id": assignment.id,
        "source": nbformat.writes(assignment.source),
        "release": nbformat.writes(assignment.release),
        "files": {name: base64.b64encode(blob).decode("ascii") for name, blob in assignment.files.items()},
        "other_ids": {k: sorted(v) for k, v in assignment.other_ids.items()},
    }
    data["digest"] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    data["code"] = code_digest()
    return data


def hold(payload: dict) -> dict:
    """The task that holds the assignment on the workers. It is a task, not scattered data, so
    that Dask can compute it again if every worker holding it dies."""
    return payload


_assignments: dict[str, object] = {}
_assignments_lock = threading.Lock()


def _assignment(payload: dict):
    """The worker's Assignment for a payload, built once per worker process."""
    from .assignment import Assignment
    from .notebooks import parse_notebook

    with _assignments_lock:  # Assignment() parses cells with ast, which is not thread-safe
        found = _assignments.get(payload["digest"])
        if found is None:
            found = Assignment(
                id=payload["id"],
                source=parse_notebook(payload["source"], f"source of {payload['id']}"),
                release=parse_notebook(payload["release"], f"release of {payload['id']}"),
                files={k: base64.b64decode(v) for k, v in payload["files"].items()},
                other_ids={k: set(v) for k, v in payload["other_ids"].items()})
            _assignments[payload["digest"]] = found
        return found


# --- the worker's side ------------------------------------------------------------------------

class HostSlots:
    """Slots unique across every worker process of this host (lock files), so that concurrent
    submissions never share a sandbox uid (61000 + slot), however many workers a host runs."""

    def __init__(self, folder: Path | None = None, limit: int = 512) -> None:
        self.folder = folder or Path(tempfile.gettempdir()) / f"torchcourse-slots-{os.getuid()}"
        self.limit = limit

    def acquire(self) -> tuple[int, int]:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        for slot in range(self.limit):
            fd = os.open(self.folder / f"{slot}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise RuntimeError(f"all {self.limit} grading slots of this host are taken")

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the file drops the lock (a dead worker's locks drop with it)


_slots = HostSlots()


def worker_hide(hide: list[str]) -> list[str]:
    """What a submission must not see on this worker: the folders the instructor hides that
    exist here (the course folder, when the worker shares it), this worker's home and its Dask
    folder. The profile's own `hide` is added by the runner."""
    paths = {os.path.realpath(p) for p in hide if os.path.isdir(p)}
    paths.add(os.path.realpath(os.path.expanduser("~")))
    try:
        from distributed import get_worker
        paths.add(os.path.realpath(get_worker().local_directory))
    except (ImportError, ValueError):
        pass
    return sorted(p for p in paths if p != "/")


def worker_info() -> dict:
    """What the instructor checks about each worker before a batch."""
    import platform
    import sys

    from . import __version__
    info = {"code": code_digest(), "torchcourse": __version__, "python": platform.python_version(),
            "torch": None, "executable": sys.executable}
    try:
        from importlib.metadata import version
        info["torch"] = version("torch")
    except Exception:
        pass
    return info


def grade_remote(payload: dict, raw: bytes, student: str, profile: dict, hide: list[str]) -> dict:
    """Runs on a worker: grade one submission, return the record and the graded notebook as JSON."""
    from . import grading

    if payload.get("code") != code_digest():
        raise RuntimeError("this worker runs different grader code from the instructor's "
                           "(install the same version of the project on every worker)")
    assignment = _assignment(payload)
    prof = Profile(**profile).validate()
    try:
        slot, fd = _slots.acquire()
        try:
            graded = grading.grade_notebook(assignment, raw, student, prof, hide=worker_hide(hide), slot=slot)
        finally:
            _slots.release(fd)
    except Exception as err:  # a grader bug: a record, as local grading makes, never a pickled exception
        where = _worker_name()
        record = grading.unrun(assignment, student, "crashed",
                               f"internal grader error on {where}: {type(err).__name__}: {_short(err)}")
        return {"record": record.to_json(), "notebook": None}
    return {"record": graded.record.to_json(),
            "notebook": None if graded.notebook is None else json.dumps(graded.notebook)}


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "a cluster worker"


# --- the instructor's side --------------------------------------------------------------------

def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> dict:
    """Check that a Dask scheduler answers at address, with one clear line if not: a refused
    connection is told at once, silence after `timeout` seconds, and a server that is not a
    Dask scheduler as such (the Dask client itself would retry, or fail deep inside)."""
    import asyncio
    import socket

    m = ADDRESS.match(address)
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.timeout:
        raise CourseError(f"cannot reach a Dask scheduler at {address}: no answer within {timeout:g} s "
                          "(a firewall, or a wrong host?)") from None
    except OSError as err:
        why = err.strerror or _short(err)
        raise CourseError(f"cannot reach a Dask scheduler at {address} ({why}): is `dask scheduler` "
                          "running there, on that port?") from None

    async def identity() -> dict:
        from distributed.comm import connect
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    try:
        info = asyncio.run(identity())
    except Exception as err:  # garbage read as a frame length can even be a MemoryError
        why = "" if isinstance(err, MemoryError) else f" ({_short(err)})"
        raise CourseError(f"something answers at {address}, but it is not a Dask scheduler{why}") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise CourseError(f"{address} is a Dask {kind}, not a scheduler: give the scheduler's address")
    return info


@dataclasses.dataclass
class Progress:
    done: int = 0
    failed: int = 0      # submissions the cluster could not grade (recorded as crashed)
    retried: int = 0     # submissions sent again after a worker running them died
    workers: int = 0


class Cluster:
    """A connection to a Dask scheduler whose workers grade; made before anything is written."""

    def __init__(self, address: str, profile: Profile, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                 workers_timeout: float = WORKERS_TIMEOUT_S, say: Callable[[str], None] = print) -> None:
        import logging

        from distributed import Client

        self.address = check_address(address)
        self.profile = profile
        self.say = say
        self.on_progress: Callable[[Progress], None] | None = None  # set by the caller, if it shows progress
        # distributed logs connection retries and shutdown chatter; the user gets our lines instead
        for name in ("distributed", "distributed.client", "distributed.core", "distributed.comm",
                     "distributed.batched", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        probe(self.address, connect_timeout)
        try:
            self.client = Client(self.address, timeout=connect_timeout, set_as_default=False,
                                 name="course-grade")
        except Exception as err:
            raise CourseError(f"cannot connect to the Dask scheduler at {self.address} within "
                              f"{connect_timeout:g} s ({_short(err)})") from None
        try:
            self._check_workers(workers_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def resources(self) -> dict[str, int] | None:
        """A GPU profile runs one submission per GPU at a time, on workers that advertise one."""
        return {"GPU": 1} if self.profile.device == "cuda" else None

    def _suitable(self) -> dict[str, dict]:
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        if self.resources:
            workers = {a: w for a, w in workers.items() if w.get("resources", {}).get("GPU", 0) >= 1}
        return workers

    def _check_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        told = False
        while not self._suitable():
            if time.monotonic() > deadline:
                what = "a GPU (dask worker --resources GPU=1)" if self.resources else "any worker"
                raise CourseError(f"the Dask scheduler at {self.address} has no worker with {what} "
                                  f"after {timeout:g} s; start workers (see docs/cluster.md)")
            if not told:
                self.say(f"waiting for workers to join the scheduler at {self.address}"
                         + (" (with --resources GPU=1)" if self.resources else ""))
                told = True
            time.sleep(0.5)
        try:
            infos = self.client.run(worker_info, workers=list(self._suitable()))
        except Exception as err:
            raise CourseError(f"the workers at {self.address} cannot run the grader ({_short(err)}): "
                              "install this project on every worker (docs/cluster.md)") from None
        mine = code_digest()
        stale = sorted(a for a, info in infos.items() if info.get("code") != mine)
        if stale:
            raise CourseError(f"{len(stale)} worker(s) run different grader code from this one "
                              f"({', '.join(stale[:3])}): install the same version of the project on every worker")
        self.workers = len(infos)

    def close(self) -> None:
        try:
            self.client.close(timeout=2)
        except Exception:
            pass

    def grade(self, assignment, jobs: list[tuple[str, bytes]], profile: Profile, hide: list[str],
              on_progress: Callable[[Progress], None] | None = None) -> Iterator[tuple[str, object]]:
        """Yield (student, Graded) as each submission comes back, each student exactly once."""
        from distributed import as_completed
        from distributed.client import FutureCancelledError

        from .grading import Graded, Record, unrun

        client, batch = self.client, uuid.uuid4().hex[:8]
        on_progress = on_progress or self.on_progress
        prof = dataclasses.asdict(profile)
        progress = Progress(workers=self.workers)
        total = len(jobs)
        futures: dict[str, tuple[str, object]] = {}   # in flight: key -> (student, future)
        queue = iter(enumerate(jobs))

        def submit_more() -> list:
            """Keep a window of tasks in flight (the scheduler holds their bytes), growing with
            the workers: a class of 1,000 is not all in the scheduler's memory at once."""
            new = []
            while len(futures) < max(WINDOW, 4 * progress.workers):
                try:
                    n, (student, raw) = next(queue)
                except StopIteration:
                    break
                fut = client.submit(grade_remote, held, raw, student, prof, hide, pure=False,
                                    key=f"grade-{assignment.id}-{batch}-{n:05d}", resources=self.resources,
                                    priority=-n)
                futures[fut.key] = (student, fut)
                new.append(fut)
            return new

        try:
            held = client.submit(hold, assignment_payload(assignment), key=f"assignment-{assignment.id}-{batch}",
                                 pure=False)
            done = as_completed(submit_more(), loop=client.loop, with_results=False)
        except Exception as err:
            raise self._lost(err, 0, total) from None
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(futures, progress, stop, on_progress), daemon=True)
        watcher.start()
        seen: set[str] = set()
        try:
            for fut in done:
                student, _ = futures.pop(fut.key)
                if student in seen:  # cannot happen (a future completes once); never write twice
                    continue
                seen.add(student)
                graded = self._collect(fut, student, assignment, Graded, Record, unrun,
                                       FutureCancelledError, progress, total)
                fut.release()
                progress.done += 1
                if on_progress:
                    on_progress(progress)
                yield student, graded
                if self._scheduler_gone():
                    raise self._lost(None, progress.done, total)
                try:
                    done.update(submit_more())
                except Exception as err:
                    raise self._lost(err, progress.done, total) from None
        finally:
            stop.set()
            for _, fut in list(futures.values()):
                fut.release()
            held.release()

    def _collect(self, fut, student, assignment, Graded, Record, unrun, FutureCancelledError,
                 progress: Progress, total: int):
        from distributed.scheduler import KilledWorker
        import nbformat

        if fut.status == "finished":
            try:
                out = fut.result(timeout=120)
            except (FutureCancelledError, OSError, TimeoutError) as err:
                raise self._lost(err, progress.done, total) from None
            if not isinstance(out, dict):
                out = {}
            nb = out.get("notebook")
            return Graded(Record.from_json(out["record"]), None if nb is None else nbformat.from_dict(json.loads(nb)))
        if fut.status == "cancelled" or self._scheduler_gone():
            raise self._lost(None, progress.done, total)
        err = fut.exception(timeout=30)
        progress.failed += 1
        if isinstance(err, KilledWorker):
            tries = err.allowed_failures + 1
            reason = (f"every grading worker that ran it died ({tries} tries on the cluster); "
                      "it was not tried again")
        else:
            reason = f"internal grader error on the cluster: {type(err).__name__}: {_short(err)}"
        return Graded(unrun(assignment, student, "crashed", reason), None)

    def _watch(self, futures: dict, progress: Progress, stop: threading.Event, on_progress) -> None:
        """Count submissions sent again after a worker died (the scheduler's own count)."""
        def suspicious(dask_scheduler, keys):  # defined here, so sent by value: the scheduler needs no torchcourse
            tasks = dask_scheduler.tasks
            return [k for k in keys if k in tasks and tasks[k].suspicious]

        retried: set[str] = set()
        while not stop.wait(0.5):
            try:
                keys = set(list(futures)) - retried  # list(): the dict changes in the main thread
                retried.update(self.client.run_on_scheduler(suspicious, keys=sorted(keys)))
                progress.workers = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
            except Exception:
                continue
            if len(retried) != progress.retried:
                progress.retried = len(retried)
                if on_progress:
                    on_progress(progress)

    def _scheduler_gone(self) -> bool:
        return self.client.status not in ("running", "connecting")

    def _lost(self, err, done: int, total: int) -> CourseError:
        why = f" ({_short(err)})" if err else ""
        return CourseError(f"lost the Dask scheduler at {self.address}{why} after {done} of {total} "
                           "submission(s); the grades written so far are kept: run the command again "
                           "to grade the rest")


def _short(err) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
