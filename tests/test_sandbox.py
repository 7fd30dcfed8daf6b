"""The sandbox's view of the filesystem, checked from inside it.

The end-to-end attacks live in test_bad_submissions.py; this file pins the one rule that
decides whether anything can run at all: folders the submission must read (the Python
installation) stay visible even when they lie under a hidden folder or under /tmp, which the
sandbox replaces with an empty scratch folder. A course cloned under /tmp, with its .venv
inside, once lost torch's lazily imported modules to exactly that.
"""
from __future__ import annotations

import os

import pytest

from torchcourse import sandbox

# exit codes of the child that looks around inside the sandbox
OK, KEPT_UNREADABLE, HIDDEN_VISIBLE, SCRATCH_NOT_EMPTY, KEPT_WRITABLE, NO_SANDBOX = range(6)


def look_inside(spec: sandbox.SandboxSpec, kept_file: str, hidden_file: str, other_tmp: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = NO_SANDBOX
        try:
            kind = sandbox.isolate(spec)
            if kind != "none":
                code = KEPT_UNREADABLE  # until the kept file has been read
                sandbox.confine(spec, kind)
                with open(kept_file) as f:
                    code = OK if f.read() == "kept" else KEPT_UNREADABLE
                if os.path.exists(hidden_file):
                    code = HIDDEN_VISIBLE
                elif os.path.exists(other_tmp):
                    code = SCRATCH_NOT_EMPTY
                else:
                    try:
                        open(kept_file + ".new", "w").close()
                        code = KEPT_WRITABLE
                    except OSError:
                        pass
        except BaseException:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("where", ["under the hidden course root", "under /tmp only"])
def test_kept_folders_stay_readable_under_hidden_and_scratch_folders(tmp_path, where):
    assert str(tmp_path).startswith("/tmp/"), "pytest's tmp_path is expected under /tmp"
    os.chmod(tmp_path, 0o755)
    root = tmp_path / "course"
    kept = (root / ".venv") if where == "under the hidden course root" else (tmp_path / "venv")
    kept.mkdir(parents=True)
    (kept / "lib.py").write_text("kept")
    (root / "source").mkdir(parents=True, exist_ok=True)
    (root / "source" / "secret.txt").write_text("hidden test")
    (tmp_path / "other.txt").write_text("another student's scratch")
    for d in (kept, kept / "lib.py"):
        os.chmod(d, 0o755 if d.is_dir() else 0o644)

    spec = sandbox.SandboxSpec(mode="required", hide=[str(root)], keep=[str(kept)],
                               workdir="/tmp/work")
    code = look_inside(spec, str(kept / "lib.py"), str(root / "source" / "secret.txt"),
                       str(tmp_path / "other.txt"))
    if code == NO_SANDBOX:
        pytest.skip("this machine allows neither namespaces as root nor a user namespace")
    assert code == OK, {KEPT_UNREADABLE: "the kept folder is not readable inside the sandbox",
                        HIDDEN_VISIBLE: "a hidden file is visible inside the sandbox",
                        SCRATCH_NOT_EMPTY: "the grader's /tmp shows through the scratch /tmp",
                        KEPT_WRITABLE: "the kept folder is writable inside the sandbox"}.get(code, code)


def test_scratch_stays_writable_under_a_hidden_tmp_and_the_loopback_is_private():
    """A gradebook kept in /tmp makes the grader hide /tmp; the submission's scratch /tmp must
    stay a writable folder of its own all the same (torch.compile's cache, the rendezvous file of
    a process group). Its network namespace has a loopback of its own, up, that reaches its own
    sockets and not the grader's."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    steps = ["sandbox", "scratch written", "own loopback reached", "grader's loopback refused"]
    pid = os.fork()
    if pid == 0:
        code = NO_SANDBOX
        try:
            spec = sandbox.SandboxSpec(mode="required", hide=["/tmp"], keep=sandbox.python_prefixes(),
                                       workdir="/tmp/work")
            kind = sandbox.isolate(spec)
            if kind != "none":
                code = 10
                sandbox.confine(spec, kind)
                with open("/tmp/scratch.txt", "w") as f:
                    f.write("mine")
                code = 11
                inside = socket.socket()
                inside.bind(("127.0.0.1", 0))
                inside.listen(1)
                socket.create_connection(inside.getsockname(), timeout=2).close()
                code = 12
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                except OSError:
                    code = OK
        except BaseException:
            pass
        os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        server.close()
    code = os.waitstatus_to_exitcode(status)
    if code == NO_SANDBOX:
        pytest.skip("this machine allows neither namespaces as root nor a user namespace")
    assert code == OK, f"inside the sandbox, got as far as: {steps[code - 10] if 10 <= code <= 12 else code}"


def test_a_child_that_stops_reading_cannot_hold_the_grader():
    """The grader's sends have a deadline: a submission that keeps its end of the channel open
    but never reads (a 20 MB cell fills any socket buffer) costs its own cell, not the batch."""
    import socket
    import time

    from torchcourse import runner

    ours, theirs = socket.socketpair()
    try:
        link = runner._Link(ours, b"k" * 32)
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="stopped reading"):
            link.send({"op": "run", "source": "x" * 20_000_000}, time.monotonic() + 1)
        assert time.monotonic() - start < 3
    finally:
        ours.close()
        theirs.close()


def test_frames_the_executor_did_not_sign_are_refused():
    """Whoever else writes to the channel (a thread, a forked child) lacks the run's key."""
    import json
    import socket
    import struct

    from torchcourse import runner

    ours, theirs = socket.socketpair()
    try:
        link = runner._Link(ours, b"k" * 32)
        fake = json.dumps({"event": "done", "verdict": {"status": "pass"}}).encode()
        theirs.sendall(struct.pack("!IQ", len(fake), 0) + fake + bytes(16))
        with pytest.raises(runner.ProtocolError, match="did not sign"):
            link.poll_message(1)
    finally:
        ours.close()
        theirs.close()


def test_tests_see_what_the_locked_cells_defined_whatever_a_submission_rebinds(profile):
    """A test that calls a helper of a locked cell (08's train_epoch, 09's ImageDataset) gets
    that helper, not the one a submission put under its name; the submission's own code still
    sees its own binding, and nothing is flagged (an innocent name clash is no tampering)."""
    from torchcourse.runner import Cell, run_cells

    cells = [
        Cell(0, "locked", "setup", "def helper():\n    return 1\n\n\nclass Box:\n    def size(self):\n        return 1\n"),
        Cell(1, "answer", "cheat", "helper = lambda: 2\n\n\nclass Box:\n    def size(self):\n        return 2\n\n\n"
                                   "def mine():\n    return helper()\n"),
        Cell(2, "test", "test-locked", "assert helper() == 1 and Box().size() == 1, 'the rebound helper ran'\n"
                                       "assert mine() == 2, 'the submission lost its own binding'\n"),
    ]
    run = run_cells(cells, profile, hide=[])
    verdict = run.results[2].verdict
    assert verdict["status"] == "pass", verdict
    assert not run.results[2].tampered
