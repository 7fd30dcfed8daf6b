"""A fork server: one process that imports torch once and forks an executor per submission.

Why not multiprocessing's forkserver: it re-imports the caller's __main__ in every child (to
support spawn semantics), which would re-run `course` or a test script inside the sandbox, and
it hands children file descriptors of its own resource tracker. This server is small enough
to read in one sitting.

Protocol, over a SOCK_SEQPACKET Unix socket (message boundaries kept, fds passed with
SCM_RIGHTS), one JSON object per message, one request at a time:
    {"op": "fork", "args": {...}} + one fd  ->  {"pid": N}    (the fd is the job's channel)
    {"op": "status", "pid": N}              ->  {"code": exit code, or null while running}
If the grader goes away, its end of the socket closes and the server exits; each child it
forked has PR_SET_PDEATHSIG set, so it dies with the server. (The server itself does not use
PR_SET_PDEATHSIG: that signal fires when the *thread* that started it exits, and grading
threads come and go.)
"""
from __future__ import annotations

import atexit
import base64
import ctypes
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading

MAX_REQUEST = 64 * 1024 * 1024
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)


def serve(ctl: socket.socket) -> None:
    """The server loop (runs in the zygote process)."""
    from . import executor

    codes: dict[int, int] = {}
    signal.signal(signal.SIGCHLD, lambda *_: None)  # interrupt recv so children get reaped
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            codes[pid] = os.waitstatus_to_exitcode(status)
        try:
            data, fds, _, _ = socket.recv_fds(ctl, MAX_REQUEST, 4)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the grader closed the socket
        request = json.loads(data)
        if request["op"] == "fork":
            pid = os.fork()
            if pid == 0:
                ctl.close()
                _die_with_parent()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                args = request.pop("args")
                args["files"] = {k: base64.b64decode(v) for k, v in args.get("files", {}).items()}
                data = request = None  # the request holds the channel key: keep only `args`,
                try:                   # which child_main empties once it has read it
                    executor.child_main(fds[0], args)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"pid": pid}).encode())
        elif request["op"] == "status":
            ctl.send(json.dumps({"code": codes.pop(request["pid"], None)}).encode())


def main() -> None:
    fd = int(sys.argv[1])
    ctl = socket.socket(fileno=fd)
    for name in sys.argv[2:]:
        try:
            importlib.import_module(name)
        except ImportError as err:
            print(f"zygote: could not preload {name}: {err}", file=sys.stderr)
    ctl.send(b'{"ready": true}')
    serve(ctl)


class Zygote:
    """The grader's handle on the fork server; safe to share between threads."""

    def __init__(self, preload: list[str], env: dict[str, str] | None = None) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torchcourse.zygote", str(child.fileno()),
             "torchcourse.executor", *preload],
            pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL)
        child.close()
        self.sock = parent
        self.lock = threading.Lock()
        self.ready = False  # it imports torch meanwhile; the first request waits for it
        atexit.register(self.close)

    def _request(self, message: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            if not self.ready:
                if not self.sock.recv(1024):
                    raise RuntimeError("the fork server failed to start (see the error above)")
                self.ready = True
            socket.send_fds(self.sock, [json.dumps(message).encode()], list(fds))
            reply = self.sock.recv(1 << 16)
        if not reply:
            raise RuntimeError("the fork server died")
        return json.loads(reply)

    def fork(self, channel_fd: int, **args) -> int:
        args["files"] = {k: base64.b64encode(v).decode() for k, v in args.get("files", {}).items()}
        return int(self._request({"op": "fork", "args": args}, [channel_fd])["pid"])

    def status(self, pid: int) -> int | None:
        return self._request({"op": "status", "pid": pid})["code"]

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)


if __name__ == "__main__":
    main()
