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


def test_scratch_tmp_stays_writable_when_a_hidden_folder_is_tmp_itself():
    """A gradebook kept in /tmp (docs/authoring.md suggests sqlite:////tmp/gradebook-<id>.db)
    puts /tmp among the hidden folders; hiding it covered the scratch /tmp with a read-only
    tmpfs, and torch (its inductor cache under /tmp) failed inside the sandbox."""
    spec = sandbox.SandboxSpec(mode="required", hide=["/tmp"], keep=[], workdir="/tmp/work")
    pid = os.fork()
    if pid == 0:
        code = NO_SANDBOX
        try:
            kind = sandbox.isolate(spec)
            if kind != "none":
                code = KEPT_UNREADABLE
                sandbox.confine(spec, kind)
                os.makedirs("/tmp/torchinductor_student")
                code = OK
        except BaseException:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == NO_SANDBOX:
        pytest.skip("this machine allows neither namespaces as root nor a user namespace")
    assert code == OK, "/tmp is not writable inside the sandbox when /tmp is among the hidden folders"


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
