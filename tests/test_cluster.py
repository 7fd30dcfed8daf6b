"""`course grade --cluster`: a Dask scheduler and two worker processes on loopback grade a class
exactly as this machine does; a worker killed mid-batch loses no submission and writes none
twice; a submission that kills every worker it lands on is recorded as crashed; a lost
scheduler ends the batch with one line and keeps what was written; bad addresses get one line
and write nothing.

Every scheduler and worker listens on 127.0.0.1 only and is stopped by the test (LocalDask in
a with block, or a fixture's finally), whatever the outcome."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, ROOT, copy_course, run, tree
from daskcluster import LocalDask, free_port

AID = "01_introduction"
FAULTS = Path(__file__).with_name("dask_faults.py")


# --- a class of 24 -----------------------------------------------------------------------------

def make_class(course, n_mistakes: int = 8, slow: float = 0.0) -> dict[str, nbformat.NotebookNode | str]:
    """Solutions, untouched releases, catalogued mistakes, half-done notebooks and two invalid
    ones. slow: seconds a free cell sleeps in each valid notebook (to have a batch in flight)."""
    from torchcourse.assignment import Assignment
    from torchcourse.mistakes import apply, load_catalogue
    from torchcourse.notebooks import grade_id, read_notebook, role

    assignment = Assignment.load(course, AID)
    solution = read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb")
    release = read_notebook(ROOT / "release" / AID / f"{AID}.ipynb")
    catalogue = load_catalogue(course, assignment)
    subs: dict = {}
    for i in range(8):
        subs[f"solution{i}"] = copy.deepcopy(solution)
    for i in range(3):
        subs[f"release{i}"] = copy.deepcopy(release)
    for i, mistake in enumerate(catalogue[:n_mistakes]):
        nb = apply(assignment, mistake)
        for cell in nb.cells:  # what a student hands in has no hidden tests
            if role(cell) == "test":
                cell.source = assignment.release_by_id[grade_id(cell)].source
        subs[f"mistake{i}"] = nb
    for i in range(3):
        nb = copy.deepcopy(solution)
        answers = [c for c in nb.cells if role(c) == "answer"]
        for cell in answers[len(answers) // 2 + i:]:
            cell.source = assignment.release_by_id[grade_id(cell)].source
        subs[f"partial{i}"] = nb
    if slow:
        for nb in subs.values():
            nb.cells.insert(2, nbformat.v4.new_code_cell(f"import time; time.sleep({slow})"))
    subs["corrupt"] = '{"cells": ['
    subs["empty"] = ""
    return subs


def write_class(root: Path, subs: dict) -> None:
    for student, nb in subs.items():
        path = root / "submitted" / student / AID / f"{AID}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, str):
            path.write_text(nb)
        else:
            nbformat.write(nb, str(path))


def built_course(base: Path, subs: dict) -> tuple[Path, dict]:
    root = copy_course(base)
    env = {"COURSE_DB_URL": f"sqlite:///{root}/gradebook.db"}
    result = run(["course", "build", AID], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    write_class(root, subs)
    return root, env


def exports(root: Path, env: dict) -> tuple[str, list[dict]]:
    csv = run(["course", "export", AID, "--format", "csv"], cwd=root, env=env)
    js = run(["course", "export", AID, "--format", "json"], cwd=root, env=env)
    assert csv.returncode == 0 and js.returncode == 0, csv.stderr + js.stderr
    rows = json.loads(js.stdout)
    for row in rows:  # how long it ran and how much memory it took are measurements, not grades
        row.pop("seconds"), row.pop("peak_rss_mb")
    return csv.stdout, rows


def student_lines(stdout: str) -> list[str]:
    return [line.split()[0] for line in stdout.splitlines() if line.startswith("  ")]


@pytest.fixture(scope="module")
def local_export(course, tmp_path_factory):
    """The class graded on this machine: the reference for every cluster run."""
    root, env = built_course(tmp_path_factory.mktemp("local") / "course", make_class(course))
    result = run(["course", "grade", AID], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return exports(root, env)


# --- fast: addresses and profiles --------------------------------------------------------------

def test_address_check():
    from torchcourse.cluster import check_address
    from torchcourse.config import CourseError

    assert check_address("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert check_address(" tls://scheduler.example.org:8786 ") == "tls://scheduler.example.org:8786"
    for bad in ("127.0.0.1:8786", "http://host:80", "tcp://host", "tcp://host:0", "tcp://host:99999", "", "tcp://a b:1"):
        with pytest.raises(CourseError, match="not a Dask scheduler address"):
            check_address(bad)


def _profile_file(root: Path, name: str, line: str) -> None:
    text = (root / "graders" / "cpu.toml").read_text()
    (root / "graders" / f"{name}.toml").write_text(text + line + "\n")


def test_profile_cluster_setting(course_copy):
    from torchcourse.config import CourseError, load_course, load_profile

    _profile_file(course_copy, "far", 'cluster = "tcp://grader.example.org:8786"')
    _profile_file(course_copy, "typo", 'cluster = "grader.example.org:8786"')
    _profile_file(course_copy, "number", "cluster = 8786")
    c = load_course(course_copy)
    assert load_profile(c, "far").cluster == "tcp://grader.example.org:8786"
    assert load_profile(c, "cpu").cluster == ""
    with pytest.raises(CourseError, match=r"graders/typo.toml: cluster: 'grader.example.org:8786' is not a Dask"):
        load_profile(c, "typo")
    with pytest.raises(CourseError, match="cluster must be a string"):
        load_profile(c, "number")


def test_bad_cluster_gets_one_line_and_writes_nothing(course_copy):
    env = {"COURSE_DB_URL": f"sqlite:///{course_copy}/gradebook.db"}
    write_class(course_copy, {"solution": nbformat.read(str(ROOT / "solutions" / AID / f"{AID}.ipynb"), 4)})
    _profile_file(course_copy, "far", f'cluster = "tcp://127.0.0.1:{free_port()}"')
    before = tree(course_copy)
    cases = {
        ("--cluster", "localhost:8786"): "is not a Dask scheduler address",
        ("--profile", "far"): "Connection refused",  # the profile's cluster is used
        ("--cluster", "tcp://127.0.0.1:1", "--workers", "2"): "--workers sets this machine's",
    }
    for extra, expected in cases.items():
        started = time.monotonic()
        result = run(["course", "grade", AID, *extra], cwd=course_copy, env=env)
        assert result.returncode == 2, (extra, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and expected in result.stderr, (extra, result.stderr)
        assert time.monotonic() - started < 15
    assert tree(course_copy) == before


def test_probe_tells_a_scheduler_from_a_worker(tmp_path):
    from torchcourse.cluster import probe
    from torchcourse.config import CourseError

    with LocalDask(tmp_path, workers=1) as cl:
        assert probe(cl.address)["type"] == "Scheduler"
        with pytest.raises(CourseError, match="is a Dask Worker, not a scheduler"):
            probe(cl.worker_addresses()[0])
    with pytest.raises(CourseError, match="Connection refused"):
        probe(cl.address)  # stopped


def test_workers_are_checked_before_a_batch(tmp_path):
    """A GPU profile needs workers that advertise a GPU; every worker must run this grader's code."""
    from torchcourse.cluster import Cluster
    from torchcourse.config import CourseError, Profile

    gpu, cpu = Profile(name="gpu", device="cuda"), Profile(name="cpu")
    said = []
    with LocalDask(tmp_path, workers=1, worker_args=["--preload", str(FAULTS)],
                   worker_env={"TORCHCOURSE_TEST_STALE": "1"}) as cl:
        with pytest.raises(CourseError, match=r"no worker with a GPU \(dask worker --resources GPU=1\) after 1 s"):
            Cluster(cl.address, gpu, workers_timeout=1, say=said.append)
        assert said and "waiting for workers" in said[0]
        with pytest.raises(CourseError, match=r"1 worker\(s\) run different grader code"):
            Cluster(cl.address, cpu)
        cl.worker_args, cl.worker_env = ["--resources", "GPU=1"], {}
        cl.add_worker()
        cl.wait_for_workers(2)
        on = Cluster(cl.address, gpu)  # only the GPU worker is asked, and it runs this code
        try:
            assert on.resources == {"GPU": 1} and on.workers == 1
        finally:
            on.close()


# --- slow: a real cluster on loopback ----------------------------------------------------------

@pytest.mark.slow
def test_cluster_grades_exactly_as_this_machine_even_when_a_worker_dies(course, tmp_path, local_export):
    root, env = built_course(tmp_path / "course", make_class(course))
    with LocalDask(tmp_path / "dask", workers=2) as cl:
        result = run(["course", "grade", AID, "--cluster", cl.address], cwd=root, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "on 2 cluster worker(s)" in result.stdout
        assert "24 done, 0 failed (recorded as crashed), 0 sent again" in result.stdout, result.stdout
        assert exports(root, env) == local_export
        assert sorted(student_lines(result.stdout)) == sorted(make_class(course))
        # the instructor's copy of each graded notebook is written here, from the JSON that came back
        graded = nbformat.read(str(root / "autograded" / "solution0" / AID / f"{AID}.ipynb"), 4)
        assert any(c.get("outputs") for c in graded.cells if c.cell_type == "code")

        # again, slower (a free cell that sleeps changes no grade), and one worker dies mid-batch
        shutil.rmtree(root / "autograded")
        write_class(root, make_class(course, slow=0.3))
        proc = subprocess.Popen([str(BIN / "course"), "grade", AID, "--cluster", cl.address], cwd=root,
                                env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_graded(root, 6, proc)
            cl.kill_worker(0)  # the worker, its nanny, its fork server and the submissions it runs
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    names = student_lines(stdout)
    assert sorted(names) == sorted(make_class(course)) and len(set(names)) == len(names)  # each once
    summary = stdout.strip().splitlines()[-1]
    assert "24 done, 0 failed" in summary and " 0 sent again" not in summary, summary
    assert exports(root, env) == local_export
    assert len(list((root / "autograded").glob(f"*/{AID}/grading.json"))) == 24


@pytest.mark.slow
def test_submission_that_kills_every_worker_is_recorded_as_crashed(course, tmp_path):
    subs = {k: v for k, v in make_class(course).items() if k in ("solution0", "release0", "mistake0")}
    subs["zz-poison"] = copy.deepcopy(subs["solution0"])
    root, env = built_course(tmp_path / "course", subs)
    with LocalDask(tmp_path / "dask", workers=2, worker_args=["--preload", str(FAULTS)],
                   worker_env={"TORCHCOURSE_TEST_POISON": "zz-poison"},
                   scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "2"}) as cl:
        result = run(["course", "grade", AID, "--cluster", cl.address], cwd=root, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    _, rows = exports(root, env)
    by = {r["student"]: r for r in rows}
    assert by["zz-poison"]["status"] == "crashed"
    assert "every grading worker that ran it died (3 tries" in by["zz-poison"]["reason"]
    assert by["solution0"]["score"] == 22 and by["release0"]["status"] == "graded"
    assert "4 done, 1 failed" in result.stdout, result.stdout


@pytest.mark.slow
def test_lost_scheduler_keeps_what_was_written(course, tmp_path):
    root, env = built_course(tmp_path / "course", make_class(course, slow=1.0))
    with LocalDask(tmp_path / "dask", workers=2) as cl:
        proc = subprocess.Popen([str(BIN / "course"), "grade", AID, "--cluster", cl.address], cwd=root,
                                env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_graded(root, 3, proc)
            cl.kill_scheduler()
            started = time.monotonic()
            stdout, stderr = proc.communicate(timeout=120)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 2, stderr
    assert stderr.count("\n") == 1 and "lost the Dask scheduler" in stderr and "kept" in stderr, stderr
    assert took < 60
    _, rows = exports(root, env)
    written = sorted(p.parts[-3] for p in (root / "autograded").glob(f"*/{AID}/grading.json"))
    assert 3 <= len(rows) < 24 and sorted(r["student"] for r in rows) == written


def _env(extra: dict) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _wait_graded(root: Path, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(list((root / "autograded").glob(f"*/{AID}/grading.json"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the batch did not start"
        time.sleep(0.1)
