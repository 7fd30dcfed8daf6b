"""A Dask scheduler and worker processes on loopback, started with the `dask` command as an
instructor would (docs/cluster.md), and always stopped: used by tests/test_cluster.py and
benchmarks/grading.py --cluster."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalDask:
    """`dask scheduler` and N `dask worker` processes (one thread each), on 127.0.0.1 only.
    Each process gets a session of its own, so that kill_worker takes the worker, its nanny,
    its fork server and every submission it runs down together, as a lost node would."""

    def __init__(self, folder: Path, workers: int = 2, *, scheduler_env: dict | None = None,
                 worker_args: list[str] | None = None, worker_env: dict | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.worker_args = worker_args or []
        self.worker_env = worker_env or {}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        try:
            self.scheduler = self._spawn("scheduler", [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                                                       "--port", str(self.port), "--no-dashboard"],
                                         scheduler_env or {})
            self._wait_listening()
            for _ in range(workers):
                self.add_worker()
            self.wait_for_workers(workers)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, cmd: list[str], extra_env: dict) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra_env)
        log = open(self.folder / f"{name}.log", "ab")
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
                                    start_new_session=True)
        finally:
            log.close()

    def _wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {(self.folder / 'scheduler.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("dask scheduler did not start listening")

    def add_worker(self) -> subprocess.Popen:
        n = len(self.workers)
        cmd = [str(BIN / "dask"), "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
               "--no-dashboard", "--memory-limit", "0", "--name", f"w{n}",
               "--local-directory", str(self.folder / f"w{n}"), *self.worker_args]
        proc = self._spawn(f"worker{n}", cmd, self.worker_env)
        self.workers.append(proc)
        return proc

    def worker_addresses(self) -> list[str]:
        from distributed import Client
        with Client(self.address, timeout=10, set_as_default=False) as c:
            return sorted(c.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        if n < 1:
            return
        from distributed import Client
        with Client(self.address, timeout=10, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, index: int) -> None:
        """SIGKILL the worker's whole session: nanny, worker, fork server, submissions."""
        proc = self.workers[index]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def kill_scheduler(self) -> None:
        try:
            os.killpg(self.scheduler.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.scheduler.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in [*self.workers, self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def __enter__(self) -> "LocalDask":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
