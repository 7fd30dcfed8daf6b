"""A JupyterHub for one class, on loopback, for tests/test_classroom.py.

What a real hub of this course has (docs/classroom.md), in a temporary folder:
- the hub and its proxy (configurable-http-proxy, which scripts/setup-env installs into .node/
  from npm) on 127.0.0.1, on free ports; the hub's database and cookie secret in `state/`;
- a shared-password authenticator for three allowed users: one instructor, two students;
- SimpleLocalProcessSpawner: every user's JupyterLab runs as this test's own account (root here,
  hence --allow-root), each with a home of its own under `homes/`, and nothing else of the host's
  Jupyter set-up (the spawner passes no JUPYTER_* variables: each server reads ~/.jupyter);
- nbgrader's file exchange in `exchange/`;
- the instructor's home holds a copy of the course (`~/course`) and a ~/.jupyter/nbgrader_config.py
  that points formgrader at it and loads the course's own nbgrader_config.py, so formgrader's
  buttons use the course's plugins (the sandboxed grader);
- each student's ~/.jupyter/nbgrader_config.py names the course, the exchange and their student
  id (every server runs as one system account here, and nbgrader's exchange would otherwise file
  every submission under that account's name); formgrader and the course list are turned off for
  students, server and lab side, as an instructor would.

Everything stops when the context ends, whatever happened: the hub (which stops the proxy and the
servers it spawned), then any process still left of those it started, by process group.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from conftest import BIN, ROOT, copy_course
from test_browser import LAB_ARGS, _free_port, _log_tail, quiet_lab_settings

PROXY = ROOT / ".node" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_START_S = 120
STOP_S = 30
SPAWN_S = 240  # a user's JupyterLab on a loaded 2-core machine (the hub's own limits)
COURSE_ID = "pytorch-first-principles"
# What students may not have: formgrader (it shows every student's work) and the course list.
STUDENT_SERVER_OFF = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"]
STUDENT_LAB_OFF = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list",
                   "@jupyter/nbgrader:create-assignment"]


@dataclass
class Hub:
    url: str              # http://127.0.0.1:PORT, the proxy: what a browser talks to
    password: str
    homes: Path
    exchange: Path
    log: Path             # the hub's, the proxy's and every single-user server's output

    def home(self, user: str) -> Path:
        return self.homes / user

    @property
    def course(self) -> Path:
        return self.home("instructor") / "course"

    def log_tail(self, n: int = 60) -> str:
        return _log_tail(self.log, n)


def _instructor(home: Path, exchange: Path) -> None:
    course = copy_course(home / "course")
    (home / ".jupyter").mkdir(parents=True, exist_ok=True)
    (home / ".jupyter" / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        "# the course's own settings: its plugins route Autograde and Generate feedback through the grader\n"
        f"load_subconfig({str(course / 'nbgrader_config.py')!r})  # noqa: F821\n")


def _student(home: Path, student: str, exchange: Path) -> None:
    jupyter = home / ".jupyter"
    (jupyter / "labconfig").mkdir(parents=True, exist_ok=True)
    (jupyter / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        f"c.CourseDirectory.student_id = {student!r}\n")
    (jupyter / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {name: False for name in STUDENT_SERVER_OFF}}}))
    (jupyter / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {name: True for name in STUDENT_LAB_OFF}}))


def _hub_config(state: Path, homes: Path, ports: dict[str, int], users: list[str], password: str) -> str:
    single_user = [str(BIN / "jupyterhub-singleuser"), "--allow-root", *LAB_ARGS]
    return f"""c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://127.0.0.1:{ports['proxy']}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{ports['hub']}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports['api']}"
c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(state / 'cookie_secret')!r}
c.JupyterHub.pid_file = {str(state / 'jupyterhub.pid')!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {password!r}
c.Authenticator.allowed_users = {set(users)!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(homes / '{username}')!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.cmd = {single_user!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = {SPAWN_S}
c.Spawner.http_timeout = {SPAWN_S}
c.Spawner.environment = {{"PATH": {f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"!r}}}
"""


class _Descendants:
    """Every process the hub starts (servers, kernels, graders, the proxy), noted once a second
    while it runs, with its start time, so that none can outlive the test, and no recycled pid of
    someone else's is ever signalled."""

    def __init__(self, root: int):
        self.root, self.seen, self.done = root, {}, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _note(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(p.pid, p.create_time())

    def _watch(self) -> None:
        while not self.done.wait(1.0):
            self._note()

    def alive(self) -> list[psutil.Process]:
        out = []
        for pid, created in list(self.seen.items()):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created:
                    out.append(p)
                    out.extend(p.children(recursive=True))
        return out

    def stop(self) -> None:
        self._note()
        self.done.set()
        self.thread.join(timeout=5)


def _stop(proc: subprocess.Popen, tracked: _Descendants) -> None:
    """SIGTERM to the hub (it stops its servers and the proxy), then SIGKILL to whatever of its
    descendants is left, with the process groups they lead (a server's kernels, a grader)."""
    tracked.stop()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for p in tracked.alive():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(p.pid) == p.pid:
                os.killpg(p.pid, signal.SIGKILL)
            p.kill()


@contextlib.contextmanager
def running_hub(base: Path, instructor: str, students: list[str]):
    """A started hub (see the module's docstring); skips the test when the hub cannot start."""
    if not PROXY.exists():
        pytest.skip(f"JupyterHub's proxy is not installed ({PROXY}): scripts/setup-env "
                    "installs it with npm, which it reported missing or failing")
    state, homes, exchange = base / "state", base / "homes", base / "exchange"
    for folder in (state, homes, exchange):
        folder.mkdir(parents=True)
    exchange.chmod(0o1777)  # as on a real hub: everybody writes, nobody removes others' files
    _instructor(homes / instructor, exchange)
    for student in students:
        _student(homes / student, student, exchange)
    for user in (instructor, *students):
        quiet_lab_settings(homes / user / ".jupyter" / "lab" / "user-settings")
    ports = {}
    while len(set(ports.values())) < 3:
        ports = {name: _free_port() for name in ("proxy", "hub", "api")}
    password = secrets.token_hex(12)
    (state / "jupyterhub_config.py").write_text(_hub_config(state, homes, ports, [instructor, *students], password))
    log = base / "jupyterhub.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("COURSE_ROOT", "COURSE_DB_URL") and not k.startswith(("JUPYTER", "IPYTHON"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(state / "jupyterhub_config.py")], cwd=state,
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    hub = Hub(url=f"http://127.0.0.1:{ports['proxy']}", password=password, homes=homes, exchange=exchange, log=log)
    tracked = _Descendants(proc.pid)
    try:
        deadline = time.monotonic() + HUB_START_S
        while True:
            if proc.poll() is not None:
                pytest.skip(f"JupyterHub exited with status {proc.returncode} at start:\n{hub.log_tail()}")
            try:  # through the proxy: both are up
                with urllib.request.urlopen(f"{hub.url}/hub/api/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"JupyterHub did not answer within {HUB_START_S} s:\n{hub.log_tail()}")
            time.sleep(0.5)
        yield hub
    finally:
        _stop(proc, tracked)
