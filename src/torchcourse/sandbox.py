"""The sandbox a submission runs in, built from Linux primitives that need no container engine.

Called only inside the child process that will run one submission (never in the grader):

    isolate(spec)  new mount, PID, IPC, UTS and (unless allowed) network namespaces; the child
                   forks once more, and that process becomes the init of the new PID namespace.
    confine(spec)  hides private folders behind empty tmpfs mounts (keeping the Python
                   installation visible, read-only), gives the submission a private /tmp,
                   /var/tmp and /dev/shm of fixed size; then the init forks the process that
                   runs the submission (so that it has ordinary signal semantics: a segfault or
                   a kill of itself ends it) and stays behind only to reap and pass its exit
                   status on; every process in the namespace dies with it. The submission's
                   process drops to an unprivileged uid (or all capabilities inside a user
                   namespace), sets no_new_privs, and gets rlimits (address space, processes,
                   file size, CPU, open files, core dumps).

The grader side (`Cgroup`) puts each submission in cgroups of its own when the machine has
them (v1 or v2, as root): the kernel then counts exactly the memory the submission allocates
(pages shared with the fork server stay charged to the server), enforces the memory and
process limits, and reports out-of-memory kills.

As root we use the namespaces directly; otherwise we try a user namespace. `spec.mode` says
what to do when neither works: "required" fails the submission with a clear reason,
"best-effort" runs with rlimits only, "off" skips isolation entirely.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import resource
import signal
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
MB = 1024 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """The sandbox could not be built; the message says which step failed."""


@dataclasses.dataclass
class SandboxSpec:
    mode: str = "required"            # required | best-effort | off
    network: bool = False
    hide: list[str] = dataclasses.field(default_factory=list)   # folders made invisible
    keep: list[str] = dataclasses.field(default_factory=list)   # folders under them kept (read-only)
    uid: int = 61000                  # unprivileged uid used when the grader runs as root
    memory_mb: int = 3072
    limit_address_space: bool = True  # RLIMIT_AS (off on GPU machines: CUDA reserves huge ranges)
    max_processes: int = 64
    max_file_mb: int = 64
    scratch_mb: int = 256
    cpu_seconds: int = 900
    workdir: str = "/tmp/work"
    cgroup_procs: list[str] = dataclasses.field(default_factory=list)  # cgroup.procs files to join


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# --- namespaces ---------------------------------------------------------------------------

def isolate(spec: SandboxSpec) -> str:
    """Enter new namespaces and fork; returns only in the inner process.

    Returns "namespaces", "user-namespace" or "none" (best-effort without isolation). The
    outer process waits for the inner one and exits with its status; if the outer process is
    killed, the inner one gets SIGKILL (set up in confine, after the uid change)."""
    if spec.mode == "off":
        return "none"
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not spec.network:
        flags |= CLONE_NEWNET
    kind = "namespaces"
    uid, gid = os.getuid(), os.getgid()
    try:
        if os.geteuid() == 0:
            _unshare(flags)
        else:
            _unshare(flags | CLONE_NEWUSER)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
            kind = "user-namespace"
    except (SandboxError, OSError) as err:
        if spec.mode == "required":
            raise SandboxError(f"cannot create namespaces ({err}); run the grader as root, enable "
                               "unprivileged user namespaces, or set sandbox = \"best-effort\"") from None
        return "none"
    pid = os.fork()
    if pid == 0:
        return kind
    _wait_and_pass_on(pid)  # the outer process holds nothing and only waits


# --- filesystem, identity, limits ---------------------------------------------------------

def _nested(paths: list[str]) -> list[str]:
    """Drop paths inside other listed paths (mounting the outer one covers them)."""
    out: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _hide_and_keep(spec: SandboxSpec) -> None:
    """Hide private folders, give the submission empty scratch folders of its own, then bind
    back (read-only) what must stay visible under either, such as a Python installation that
    lives under the course root or under /tmp."""
    hidden = _nested(spec.hide)
    scratch = [d for d in SCRATCH_DIRS if os.path.isdir(d)]
    keep = [k for k in _nested(spec.keep) if any(_inside(k, h) for h in hidden + scratch)]
    # Open what we keep before it disappears; bind it back by file descriptor afterwards.
    handles = [(k, os.open(k, os.O_PATH | os.O_DIRECTORY)) for k in keep]
    for h in hidden:
        _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for d in scratch:
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec.scratch_mb}m,mode=1777")
    for k, fd in handles:
        os.makedirs(k, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
        _mount(None, k, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def _drop_capabilities() -> None:
    """Inside a user namespace we stay uid 0 there; drop every capability so the submission
    cannot unmount what hides the course's files."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    for cap in range(64):
        try:
            _prctl(24, cap)  # PR_CAPBSET_DROP
        except SandboxError:
            break
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def confine(spec: SandboxSpec, kind: str) -> None:
    """Filesystem view, identity and limits, in the process that will run the submission."""
    if kind != "none":
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _hide_and_keep(spec)
    os.makedirs(spec.workdir, exist_ok=True)
    if kind != "none":
        if kind == "namespaces":
            os.chown(spec.workdir, spec.uid, spec.uid)
        _become_init()  # returns in the child that runs the submission
    if kind == "namespaces":
        os.setgroups([])
        os.setresgid(spec.uid, spec.uid, spec.uid)
        os.setresuid(spec.uid, spec.uid, spec.uid)  # from root to a uid of its own: all capabilities go
    elif kind == "user-namespace":
        _drop_capabilities()
    elif kind == "none" and spec.mode != "off" and os.geteuid() == 0:
        # best-effort as root without namespaces: at least not root
        os.chown(spec.workdir, spec.uid, spec.uid)
        os.setgroups([])
        os.setresgid(spec.uid, spec.uid, spec.uid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
    if spec.mode != "off":
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which would clear it
        if os.getppid() == 1 and kind == "none":
            os._exit(137)  # the grader already went away
        _limits(spec)
    os.chdir(spec.workdir)


def _become_init() -> None:
    """Fork: the parent stays as the PID namespace's init (reaping, passing the submission's
    exit status on, dying with the grader); the child returns and runs the submission."""
    child = os.fork()
    if child == 0:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _wait_and_pass_on(child)


def _wait_and_pass_on(child: int) -> None:
    """Close every descriptor, reap whatever exits (an init must), and exit with the child's
    status (128 + signal when it was killed). Never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in range(3, 1024):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status)
                     else 128 + os.WTERMSIG(status))


def join_cgroups(spec: SandboxSpec) -> None:
    """Move this process (and so everything it starts) into the submission's cgroups."""
    for procs in spec.cgroup_procs:
        try:
            with open(procs, "w") as f:
                f.write("0")
        except OSError as err:
            raise SandboxError(f"cannot join cgroup {os.path.dirname(procs)}: {err.strerror}") from None


def _limits(spec: SandboxSpec) -> None:
    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    if spec.limit_address_space:
        # Relative to what the pre-imported libraries already map: the budget is for the
        # submission's own allocations.
        lower(resource.RLIMIT_AS, _vm_size() + spec.memory_mb * MB)
    nproc = spec.max_processes
    if os.getuid() != spec.uid:
        # Not a uid of our own: RLIMIT_NPROC counts every process of this user.
        nproc += sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
    lower(resource.RLIMIT_NPROC, nproc)
    lower(resource.RLIMIT_FSIZE, spec.max_file_mb * MB)
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_NOFILE, 1024)
    lower(resource.RLIMIT_CPU, spec.cpu_seconds)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails instead of killing


# --- grader side: cgroups ---------------------------------------------------------------------

class Cgroup:
    """Memory and pids cgroups for one submission (v1 or v2); `create` returns None where the
    machine has none we can write (then the grader watches resident memory instead)."""

    V1, V2 = "/sys/fs/cgroup/memory", "/sys/fs/cgroup"

    def __init__(self, dirs: list[str], v2: bool) -> None:
        self.dirs, self.v2 = dirs, v2

    @classmethod
    def create(cls, name: str, memory_mb: int, max_processes: int) -> "Cgroup | None":
        if os.geteuid() != 0:
            return None
        limit = str(memory_mb * MB)
        try:
            if os.path.isfile(os.path.join(cls.V2, "cgroup.controllers")):
                base = os.path.join(cls.V2, "torchcourse")
                os.makedirs(base, exist_ok=True)
                _write(os.path.join(cls.V2, "cgroup.subtree_control"), "+memory +pids")
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids")
                d = os.path.join(base, name)
                os.makedirs(d, exist_ok=True)
                _write(os.path.join(d, "memory.max"), limit)
                _write(os.path.join(d, "memory.swap.max"), "0") if os.path.exists(os.path.join(d, "memory.swap.max")) else None
                _write(os.path.join(d, "pids.max"), str(max_processes + 2))
                return cls([d], v2=True)
            mem = os.path.join(cls.V1, "torchcourse", name)
            pids = os.path.join("/sys/fs/cgroup/pids", "torchcourse", name)
            os.makedirs(mem, exist_ok=True)
            _write(os.path.join(mem, "memory.limit_in_bytes"), limit)
            dirs = [mem]
            if os.path.isdir("/sys/fs/cgroup/pids"):
                os.makedirs(pids, exist_ok=True)
                _write(os.path.join(pids, "pids.max"), str(max_processes + 2))
                dirs.append(pids)
            return cls(dirs, v2=False)
        except OSError:
            return None

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def _read(self, name: str) -> str:
        with open(os.path.join(self.dirs[0], name)) as f:
            return f.read()

    def usage(self) -> int:
        return int(self._read("memory.current" if self.v2 else "memory.usage_in_bytes"))

    def peak(self) -> int:
        try:
            return int(self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes"))
        except OSError:
            return 0

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> list[int]:
        out: list[int] = []
        for procs in self.procs_files:
            try:
                with open(procs) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return sorted(set(out))

    def destroy(self) -> None:
        """Kill whatever is left in it, then remove it."""
        import time
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def python_prefixes() -> list[str]:
    """The folders of the Python installation, which submissions must still be able to read."""
    return sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
