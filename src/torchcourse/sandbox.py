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
_ARCH = os.uname().machine


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
    device_visible: bool = False      # bind /sys (CUDA needs it); the CPU profile does without
    seccomp: bool = True              # refuse namespaces, mounts, ptrace, bpf and the like
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


SCRATCH_DIRS = ("/tmp", "/var/tmp")  # and /dev/shm, made with /dev
# What a submission sees of the host besides the Python installation: the system's programs
# and libraries (read-only), and these few files of /etc that programs and libraries read.
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
             "localtime", "hosts", "alternatives", "fonts", "mime.types", "os-release", "ssl",
             "matplotlibrc", "debian_version")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEVICE_GLOBS = ("nvidia*", "dri")  # GPUs, when the machine has them
MNT_DETACH = 2


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _bind(source: str, target: str, readonly: bool = True) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def _minimal_root(spec: SandboxSpec) -> None:
    """Build the submission's file system from nothing, then make it the root.

    A tmpfs gets, read-only: the system's programs and libraries, the Python installation
    (`spec.keep`), a handful of /etc files, and the device nodes a program needs (GPUs too);
    then a fresh /proc, and private scratch folders. Nothing else of the host exists inside:
    no home, no course folder, no other copy of the course, no world-writable host folder
    shared with other submissions. `spec.hide` still hides anything listed that happens to sit
    inside what is bound (a course kept under /usr, say)."""
    # Open what will be bound before /tmp is covered (a .venv may live under /tmp), and bind
    # it by descriptor.
    handles = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in _nested(spec.keep) if os.path.isdir(k)}
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=700")
    root = "/tmp/root"
    os.makedirs(root)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for d in SCRATCH_DIRS:  # first, so that a .venv kept under /tmp is bound inside it
        os.makedirs(root + d, exist_ok=True)
        _mount("tmpfs", root + d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec.scratch_mb}m,mode=1777")
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            os.symlink(os.readlink(d), root + d)
        elif os.path.isdir(d):
            _bind(d, root + d)
    for k, fd in handles.items():
        if not any(_inside(k, d) for d in SYSTEM_DIRS if not os.path.islink(d)):
            os.makedirs(root + k, exist_ok=True)
            _bind(f"/proc/self/fd/{fd}", root + k)
        os.close(fd)
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            _bind(os.path.realpath(path), root + path)
    os.makedirs(root + "/dev", exist_ok=True)
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=755")
    os.makedirs(root + "/dev/shm")
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec.scratch_mb}m,mode=1777")
    import glob
    nodes = [f"/dev/{n}" for n in DEVICES] + [p for g in DEVICE_GLOBS for p in glob.glob(f"/dev/{g}")]
    for node in nodes:
        if os.path.exists(node):
            _bind(node, root + node, readonly=False)
    # pseudo-terminals of its own (IPython's `!cmd` runs the shell on one)
    os.makedirs(root + "/dev/pts")
    try:
        _mount("devpts", root + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
        os.symlink("pts/ptmx", root + "/dev/ptmx")
    except SandboxError:
        pass  # no terminals: `!cmd` fails, nothing else does
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{link}")
    if spec.device_visible and os.path.isdir("/sys"):
        _bind("/sys", root + "/sys")  # CUDA reads the GPU's PCI details
    os.makedirs(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    kept = _nested(spec.keep)
    for h in _nested(spec.hide):
        # only what lies inside something bound: a hidden folder that merely holds a kept one
        # (the course root around its .venv) has nothing else here to hide. A scratch folder is
        # a fresh tmpfs with nothing of the host in it; covering it (a gradebook kept in /tmp
        # hides /tmp) would only leave the submission without a writable /tmp.
        if h in SCRATCH_DIRS:
            continue
        if os.path.isdir(root + h) and not any(_inside(k, h) for k in kept):
            _mount("tmpfs", root + h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.makedirs(root + "/.old")
    _check(_libc.syscall(ctypes.c_long(155 if _ARCH == "x86_64" else 41), root.encode(), (root + "/.old").encode()),
           "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount the host's root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


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
        _minimal_root(spec)
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
        if spec.seccomp:
            _seccomp()
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


# --- seccomp: the kernel surface a submission never needs ---------------------------------

# x86_64 and aarch64 syscall numbers of what is refused with EPERM: new namespaces and joining
# others, mounts, tracing other processes, BPF, perf events, userfaultfd, keyrings, kernel
# modules and io_uring. clone() is refused only when it asks for a new namespace; clone3
# answers ENOSYS (its flags live in memory a filter cannot read), and the C library falls back
# to clone.
_DENIED = {
    "x86_64": [272, 308, 165, 166, 155, 428, 429, 430, 431, 432, 433, 442, 101, 310, 311, 321, 298,
               323, 250, 248, 249, 246, 320, 175, 313, 176, 425, 426, 427, 303, 304],
    "aarch64": [97, 268, 40, 39, 41, 428, 429, 430, 431, 432, 433, 442, 117, 270, 271, 280, 241,
                282, 219, 217, 218, 104, 294, 105, 273, 106, 425, 426, 427, 264, 265],
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_NS_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x02000000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def _seccomp() -> None:
    if _ARCH not in _DENIED:
        return  # no table for this architecture: namespaces and limits still apply
    import errno

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    denied = _DENIED[_ARCH]
    JGE = 0x35
    # another architecture's calling convention (i386 through int 0x80), or x32's numbers:
    # refused outright, or they would slip past the table
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, _AUDIT_ARCH[_ARCH]), (RET, 0, 0, ERRNO | errno.EPERM),
            (LD, 0, 0, 0), (JGE, 0, 1, 0x40000000), (RET, 0, 0, ERRNO | errno.ENOSYS)]
    for i, nr in enumerate(denied):
        prog.append((JEQ, 0, 1, nr))
        prog.append((RET, 0, 0, ERRNO | errno.EPERM))
    prog += [(JEQ, 0, 1, _CLONE3), (RET, 0, 0, ERRNO | errno.ENOSYS),
             (JEQ, 0, 3, _CLONE[_ARCH]), (LD, 0, 0, 16), (JSET, 0, 1, _NS_FLAGS),
             (RET, 0, 0, ERRNO | errno.EPERM), (RET, 0, 0, ALLOW)]
    filters = (Filter * len(prog))(*[Filter(*f) for f in prog])
    program = Program(len(prog), filters)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0), "seccomp")


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
    def create(cls, name: str, memory_mb: int, max_processes: int, cpus: float = 0) -> "Cgroup | None":
        if os.geteuid() != 0:
            return None
        limit = str(memory_mb * MB)
        try:
            if os.path.isfile(os.path.join(cls.V2, "cgroup.controllers")):
                base = os.path.join(cls.V2, "torchcourse")
                os.makedirs(base, exist_ok=True)
                _write(os.path.join(cls.V2, "cgroup.subtree_control"), "+memory +pids +cpu")
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids +cpu")
                d = os.path.join(base, name)
                os.makedirs(d, exist_ok=True)
                _write(os.path.join(d, "memory.max"), limit)
                _write(os.path.join(d, "memory.swap.max"), "0") if os.path.exists(os.path.join(d, "memory.swap.max")) else None
                _write(os.path.join(d, "pids.max"), str(max_processes + 2))
                if cpus and os.path.exists(os.path.join(d, "cpu.max")):
                    _write(os.path.join(d, "cpu.max"), f"{int(cpus * 100000)} 100000")
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
            cpu = os.path.join("/sys/fs/cgroup/cpu", "torchcourse", name)
            if cpus and os.path.isdir("/sys/fs/cgroup/cpu"):
                # CPU shared fairly: a submission gets at most its threads' worth of cores,
                # however many threads or processes it starts
                os.makedirs(cpu, exist_ok=True)
                _write(os.path.join(cpu, "cpu.cfs_period_us"), "100000")
                _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(int(cpus * 100000)))
                dirs.append(cpu)
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
