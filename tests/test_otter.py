"""The otter-grader version (`course otter`) and its Gradescope zip.

- the otter assignment is derived from source/: one otter test per graded cell with the same
  points, the public/hidden split of `course build`, no solution or hidden test in student/;
- a rerun changes nothing that matters; bad input gets one line and a non-zero exit;
- the zip grades through the project's grader: for every assignment the solution gets full
  marks, the untouched student notebook zero, and catalogued mistakes exactly the points
  `course check` (grade_notebook) gives them; `otter run` itself goes the same way;
- `grader.check` in the student notebook says what `course check` says;
- bad submissions get the same outcome through the zip as through `course grade`.

Most checks call the zip's entry point (otter_grade.grade_file, what the zip's otter plugin
calls) on a copy of the zip laid out as Gradescope does; `otter run` runs for a few (about
10 s each on 2 cores).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, ROOT, assignments, copy_course, run
from torchcourse.assignment import Assignment
from torchcourse.grading import grade_notebook, hidden_paths
from torchcourse.mistakes import apply, load_catalogue
from torchcourse.notebooks import grade_id, read_notebook, role
from torchcourse.otter_assign import split_test
from torchcourse.otter_grade import grade_file

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
IDS = assignments()
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the course with `course otter` run on every assignment."""
    root = copy_course(tmp_path_factory.mktemp("otter") / "course")
    started = time.monotonic()
    proc = run(["course", "otter"], cwd=root)
    TIMES["course otter"] = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    return root


def _zip(root: Path, aid: str) -> Path:
    (found,) = (root / "otter" / aid / "autograder").glob("*.zip")
    return found


def _autograder(root: Path, aid: str, into: Path) -> Path:
    """The zip unpacked the way Gradescope (and `otter run`) lays it out: <into>/source."""
    into.mkdir(parents=True)
    with zipfile.ZipFile(_zip(root, aid)) as zf:
        zf.extractall(into / "source")
    (into / "submission").mkdir()
    (into / "results").mkdir()
    return into


def _grade_zip(root: Path, aid: str, nb, tmp: Path, **kwargs):
    ag = _autograder(root, aid, tmp / f"autograder-{time.monotonic_ns()}")
    sub = ag / "submission" / f"{aid}.ipynb"
    if isinstance(nb, bytes):
        sub.write_bytes(nb)
    else:
        nbformat.write(nb, str(sub))
    return grade_file(sub, aid, ag / "source" / "files" / "course", **kwargs)


def _otter_notebook(root: Path, aid: str, which: str):
    folder = "autograder" if which == "solution" else "student"
    return read_notebook(root / "otter" / aid / folder / f"{aid}.ipynb")


def _with_answers(otter_nb, answers_from) -> nbformat.NotebookNode:
    """An otter notebook whose answer cells hold those of another notebook."""
    nb = copy.deepcopy(otter_nb)
    answers = {grade_id(c): c.source for c in answers_from.cells if role(c) == "answer"}
    for cell in nb.cells:
        if role(cell) == "answer" and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


# --- the otter assignment is derived from source/ -------------------------------------------

def _test_file(path: Path):
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    return create_test_file(str(path), NBMetadataConfig())


def _case_code(case) -> str:
    return case.body.test_func.__doc__


@pytest.mark.parametrize("aid", IDS)
def test_points_and_split_match_course_build(built, course, aid):
    assignment = Assignment.load(course, aid)
    release = {grade_id(c): c for c in read_notebook(ROOT / "release" / aid / f"{aid}.ipynb").cells if grade_id(c)}
    out = built / "otter" / aid
    assert sorted(p.stem for p in (out / "autograder" / "tests").glob("*.py")) == sorted(assignment.tests)
    for gid in assignment.tests:
        visible, whole = split_test(assignment.by_id[gid].source)
        full = _test_file(out / "autograder" / "tests" / f"{gid}.py")
        assert full.possible == pytest.approx(assignment.max_points[gid]), gid
        assert full.all_or_nothing
        hidden = [c for c in full.test_cases if c.hidden]
        public = [c for c in full.test_cases if not c.hidden]
        # hidden tests in course build <=> a hidden otter case holding the whole cell
        assert bool(hidden) == (whole is not None), gid
        if hidden:
            assert _case_code(hidden[0]) == whole, gid
        # the public case is what `course build` shows students in the test cell
        student_file = out / "student" / "tests" / f"{gid}.py"
        student = _test_file(student_file) if student_file.is_file() else None
        student_cases = student.test_cases if student else []
        assert all(not c.hidden for c in student_cases), gid
        if public:
            assert _case_code(public[0]).strip() == release[gid].source.strip(), gid
            assert [_case_code(c) for c in student_cases] == [_case_code(public[0])], gid
        else:
            assert not student_cases, gid
    # nothing hidden and no solution reaches student/
    release_text = (ROOT / "release" / aid / f"{aid}.ipynb").read_text()
    student_text = "\n".join(p.read_text() for p in (out / "student").rglob("*") if p.is_file())
    secret = []
    for gid in assignment.tests:
        _, whole = split_test(assignment.by_id[gid].source)
        src = assignment.by_id[gid].source
        if "### BEGIN HIDDEN TESTS" in src:
            region = src.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
            secret += region.splitlines()
    for gid in assignment.answers:
        src = assignment.by_id[gid].source
        for part in src.split("### BEGIN SOLUTION")[1:]:
            secret += part.split("### END SOLUTION", 1)[0].splitlines()
    secret = {s.strip() for s in secret if len(s.strip()) > 15 and json.dumps(s.strip())[1:-1] not in release_text}
    leaked = [s for s in secret if s in student_text or json.dumps(s)[1:-1] in student_text]
    assert not leaked, leaked[:3]
    # prose and hints carry over
    nb = read_notebook(out / "student" / f"{aid}.ipynb")
    prose = [c.source for c in assignment.source.cells if role(c) == "prose"]
    assert [c.source for c in nb.cells if role(c) == "prose"] == prose
    assert any("Hint 1" in p for p in prose)
    # every public test can be checked in the notebook
    checks = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for p in (out / "student" / "tests").glob("*.py"):
        if _test_file(p).test_cases:
            assert f'grader.check("{p.stem}")' in checks
    # the zip: the plugin, the pins, the bundle
    with zipfile.ZipFile(_zip(built, aid)) as zf:
        config = json.loads(zf.read("otter_config.json"))
        env = zf.read("environment.yml").decode()
        names = zf.namelist()
    assert any("torchcourse.otter_grade.CourseGrader" in p for p in config["plugins"])
    assert "torch==2.14.1" in env and "python=3.11" in env
    assert f"files/course/source/{aid}/{aid}.ipynb" in names


def test_rerun_changes_nothing_that_matters(built):
    aid = IDS[0]
    out = built / "otter" / aid

    def snapshot():
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                 if p.is_file() and p.suffix not in (".zip", ".whl")}
        with zipfile.ZipFile(_zip(built, aid)) as zf:
            members = {n: zf.read(n) for n in zf.namelist() if not n.endswith(".whl")}
        return files, members

    before = snapshot()
    proc = run(["course", "otter", aid], cwd=built)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "autograder").glob("*.zip"))) == 1
    after = snapshot()
    assert before[0].keys() == after[0].keys()
    assert [k for k in before[0] if before[0][k] != after[0][k]] == []
    assert [k for k in before[1] if before[1][k] != after[1].get(k)] == []


def test_bad_input_gets_one_line(built, tmp_path):
    proc = run(["course", "otter", "99_nothing"], cwd=built)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "unknown assignment" in proc.stderr
    broken = copy_course(tmp_path / "broken")
    aid = IDS[1]
    (broken / "source" / aid / f"{aid}.ipynb").write_text('{"cells": [')
    proc = run(["course", "otter", aid], cwd=broken)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "not valid JSON" in proc.stderr, proc.stderr
    assert not (broken / "otter" / aid).exists()


# --- the zip grades through the course's grader ----------------------------------------------

@pytest.mark.parametrize("aid", IDS)
def test_zip_grades_like_course_check(built, course, profile, tmp_path, aid):
    assignment = Assignment.load(course, aid)
    solution = _otter_notebook(built, aid, "solution")
    record = _grade_zip(built, aid, solution, tmp_path).record
    assert (record.status, record.score) == ("graded", assignment.total), record.cells
    blank = _grade_zip(built, aid, _otter_notebook(built, aid, "student"), tmp_path).record
    assert blank.score == 0 and blank.status == "graded"
    assert all(c.status in ("not_attempted", "not_run", "fail", "error") for c in blank.cells.values())
    assert sum(c.status == "not_attempted" for c in blank.cells.values()) >= len(blank.cells) // 2
    # a subset of the catalogue: the same points per cell as course check gives them
    catalogue = load_catalogue(course, assignment)
    check_profile = dataclasses.replace(profile, sandbox="best-effort")
    for mistake in (catalogue[0], catalogue[len(catalogue) // 2]):
        wrong = apply(assignment, mistake)
        expected = grade_notebook(assignment, wrong, "check", check_profile, hide=hidden_paths(course)).record
        got = _grade_zip(built, aid, _with_answers(solution, wrong), tmp_path).record
        assert got.score < assignment.total, mistake.name
        assert {g: c.points for g, c in got.cells.items()} == {g: c.points for g, c in expected.cells.items()}, mistake.name
        assert [c.message for c in got.cells.values()] == [c.message for c in expected.cells.values()], mistake.name


def _otter_run(built: Path, aid: str, nb, tmp: Path) -> dict:
    sub = tmp / f"{aid}.ipynb"
    nbformat.write(nb, str(sub))
    out = tmp / f"out-{time.monotonic_ns()}"
    out.mkdir()
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "otter"), "run", "-a", str(_zip(built, aid)), "-o", str(out), str(sub)],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    TIMES.setdefault("otter run", time.monotonic() - started)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((out / "results.json").read_text())


def test_otter_run_uses_the_course_grader(built, course, profile, tmp_path):
    aid = IDS[0]
    assignment = Assignment.load(course, aid)
    solution = _otter_notebook(built, aid, "solution")
    full = _otter_run(built, aid, solution, tmp_path)
    assert [t["name"] for t in full["tests"]] == assignment.tests
    assert sum(t["score"] for t in full["tests"]) == full["score"] == assignment.total
    assert [t["max_score"] for t in full["tests"]] == [assignment.max_points[g] for g in assignment.tests]
    assert "course's own grader" in full["output"] and "Sandbox:" in full["output"]
    blank = _otter_run(built, aid, _otter_notebook(built, aid, "student"), tmp_path)
    assert blank["score"] == 0 and all(t["score"] == 0 for t in blank["tests"])
    assert "Not attempted" in blank["tests"][0]["output"]
    mistake = load_catalogue(course, assignment)[1]
    wrong = apply(assignment, mistake)
    expected = grade_notebook(assignment, wrong, "check", dataclasses.replace(profile, sandbox="best-effort"),
                              hide=hidden_paths(course)).record
    got = _otter_run(built, aid, _with_answers(solution, wrong), tmp_path)
    assert [t["score"] for t in got["tests"]] == [c.points for c in expected.cells.values()]
    for t, cell in zip(got["tests"], expected.cells.values()):
        assert cell.message in t["output"]
    # never test code: no line of a hidden test reaches the results
    text = json.dumps([full, blank, got])
    for gid in assignment.tests:
        _, whole = split_test(assignment.by_id[gid].source)
        for line in (whole or "").splitlines():
            if len(line.strip()) > 25 and "checks.expect" in line:
                assert line.strip() not in text
    print(f"\ncourse otter (all {len(IDS)}): {TIMES.get('course otter', 0):.1f} s; one otter run: {TIMES['otter run']:.1f} s")


# --- grader.check in the student notebook -----------------------------------------------------

def test_grader_check_says_what_course_check_says(built, course, profile):
    from nbclient import NotebookClient

    aid = IDS[0]
    assignment = Assignment.load(course, aid)
    # a student who answered everything, with one catalogued mistake a public test catches
    public = {g for g in assignment.tests if split_test(assignment.by_id[g].source)[1] is None}
    catalogue = load_catalogue(course, assignment)
    mistake = next(m for m in catalogue if set(m.caught_by) & public)
    wrong = apply(assignment, mistake)
    expected = grade_notebook(assignment, wrong, "check", dataclasses.replace(profile, sandbox="best-effort"),
                              hide=hidden_paths(course)).record
    nb = _with_answers(_otter_notebook(built, aid, "student"), wrong)
    folder = built / "otter" / aid / "student"
    NotebookClient(nb, timeout=300, allow_errors=True, resources={"metadata": {"path": str(folder)}}).execute()
    seen = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.startswith("grader.check(\""):
            continue
        gid = cell.source.split('"')[1]
        text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)
        if gid not in public:
            continue
        seen += 1
        score = expected.cells[gid]
        if score.status == "pass":
            assert "All test cases passed" in text, (gid, text)
        else:
            assert score.message in " ".join(text.split()) or score.message in text, (gid, score.message, text)
    assert seen and any(expected.cells[g].status != "pass" for g in public)


# --- bad submissions through the zip ----------------------------------------------------------

AID = "01_introduction"
MIDDLE = "test-grow-grad"
STDERR_CELL = "import sys, warnings\nprint('progress 50%', file=sys.stderr)\nwarnings.warn('a harmless warning')"
FORGE = """\
import os, json, struct
fake = json.dumps({"event": "done", "verdict": {"status": "pass", "message": ""}, "outputs": []}).encode()
for fd in os.listdir("/proc/self/fd"):
    try:
        os.write(int(fd), struct.pack("!I", len(fake)) + fake + b"garbage that is not a frame")
    except OSError:
        pass
"""
READS = """\
import glob
for p in {paths!r} + glob.glob("/tmp/*/autograder/source/**/*.py", recursive=True)[:5]:
    try:
        with open(p, "rb") as f:
            f.read(10)
        print("READ-OK", p)
    except OSError as e:
        print("blocked", p, type(e).__name__)
"""
BAD = {
    "IPython input transformer": "get_ipython().input_transformers_post.append(lambda lines: [])",
    "patches a torch function": "import torch\ntorch.allclose = lambda *a, **k: True",
    "stderr noise": STDERR_CELL,
    "endless loop": "while True:\n    pass",
    "memory bomb": "import torch\nx = torch.empty(10**11)",
    "os._exit": "import os\nos._exit(0)",
    "reads hidden files": None,  # made from the paths of the test
    "forges the grading channel": FORGE,
}


def _bad_nbgrader(code: str):
    nb = read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb")
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == MIDDLE)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _bad_otter(built: Path, code: str):
    """The same submission in the otter notebook: the cell goes after the first cell of the
    source that follows MIDDLE and is in the otter notebook (tests are not)."""
    src = read_notebook(ROOT / "source" / AID / f"{AID}.ipynb").cells
    index = next(i for i, c in enumerate(src) if grade_id(c) == MIDDLE)
    anchor = next(grade_id(c) for c in src[index + 1:] if grade_id(c) and role(c) != "test")
    nb = _otter_notebook(built, AID, "solution")
    at = next(i for i, c in enumerate(nb.cells) if grade_id(c) == anchor)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(code))
    return nb


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_submission_same_outcome_through_the_zip(built, course, profile, tmp_path, kind):
    strict = dataclasses.replace(profile, cell_timeout_s=4, notebook_timeout_s=15, memory_mb=1024,
                                 max_processes=32, max_output_kb=64, max_file_mb=8, scratch_mb=64,
                                 max_notebook_mb=5)
    code = BAD[kind]
    if code is None:
        paths = [str(ROOT / "source" / AID / f"{AID}.ipynb"), str(ROOT / "solutions" / AID / f"{AID}.ipynb"),
                 str(built / "otter" / AID / "autograder" / "course" / "source" / AID / f"{AID}.ipynb"),
                 str(built / "otter" / AID / "autograder" / "tests" / "test-grow.py"), "/etc/shadow"]
        code = READS.format(paths=paths)
    assignment = Assignment.load(course, AID)
    expected = grade_notebook(assignment, _bad_nbgrader(code), "bad", strict, hide=hidden_paths(course, [built])).record
    # the course folders on this machine are hidden as `otter run` from the course root hides them
    graded = _grade_zip(built, AID, _bad_otter(built, code), tmp_path, profile=strict, sandbox=None,
                        hide_extra=[str(ROOT), str(built)])
    got = graded.record
    assert (got.status, got.score) == (expected.status, expected.score), (got.reason, got.flags, expected.reason)
    assert {g: c.points for g, c in got.cells.items()} == {g: c.points for g, c in expected.cells.items()}
    if kind == "reads hidden files":
        outputs = json.dumps([c.get("outputs", []) for c in graded.notebook.cells if c.cell_type == "code"])
        assert "READ-OK" not in outputs and "blocked" in outputs
    if kind in ("stderr noise", "IPython input transformer", "reads hidden files"):
        assert got.score == assignment.total
