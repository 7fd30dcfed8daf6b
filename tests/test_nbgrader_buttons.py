"""Stock nbgrader's buttons on this course are as safe as `course`.

- `nbgrader autograde` (what formgrader's autograde button runs) grades through the course's
  sandboxed grader: a batch of bad submissions (the tampering kinds of test_bad_submissions.py
  among them) and good ones gets, submission by submission, the same status, score, per-test
  statuses and messages as `course grade` of the same batch, and the good ones keep exactly
  their grades.
- `nbgrader generate_feedback` (command line, and the API formgrader's button calls) never
  puts a line of hidden test code into a feedback page, for every assignment, and shows each
  failed test's teaching message.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, assignments, copy_course, run
from torchcourse.assignment import Assignment
from torchcourse.config import load_course
from torchcourse.mistakes import apply, load_catalogue
from torchcourse.notebooks import read_notebook

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")]
AID = "01_introduction"

# A representative subset of the catalogue (all of it would take ~5 minutes more on 2 cores,
# nbgrader grading one notebook at a time): every tampering kind the issue names, plus unreadable
# files, repairs, limits and escapes. Left out: "junk timestamp.txt" (nbgrader itself refuses the
# submission in its own init_assignment, before any preprocessor: it is never graded, by either
# path's code), and the two kinds that need a second clone of the course under /srv.
KINDS = [
    "corrupt JSON", "not UTF-8", "old notebook format", "huge file", "a stranger's notebook",
    "deleted test cells", "edited test cell", "deleted answer cell",
    "endless loop", "memory bomb", "os._exit", "sys.exit", "fork bomb",
    "network", "reads hidden files", "writes the gradebook", "writes outside scratch",
    "patches a torch function", "replaces a builtin", "rebinds a setup name", "import hook",
    "forges the grading channel", "IPython input transformer", "imports the executor",
    "a name whose __hash__ runs in the grader", "frames through a traceback",
    "a symbolic link to the source", "magics",
]
STRICT = f"""device = "cpu"
cell_timeout_s = 4
notebook_timeout_s = 15
memory_mb = 1024
max_processes = 32
max_output_kb = 64
max_file_mb = 8
scratch_mb = 64
max_notebook_mb = 5
workers = 2
sandbox = "required"
hide = [{str(ROOT)!r}]
"""


def _course_with_submissions(dest: Path, made: dict[str, object], prepare: dict) -> Path:
    course = copy_course(dest)
    (course / "graders" / "strict.toml").write_text(STRICT)
    for student, nb in made.items():
        path = course / "submitted" / student / AID / f"{AID}.ipynb"
        path.parent.mkdir(parents=True)
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        else:
            nbformat.write(nb, str(path))
        if student in prepare:
            prepare[student](None, path)
    return course


def _records(course: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((course / "autograded").glob(f"*/{AID}/grading.json")):
        out[path.parent.parent.name] = json.loads(path.read_text())
    return out


def _comparable(record: dict, course: Path) -> dict:
    """What must agree between the two graders; the course folder's own path is blanked."""
    def norm(text: str) -> str:
        return re.sub(r"\d+\.\d+ s\b", "N s", text.replace(str(course), "<course>"))
    return {"status": record["status"], "score": record["score"], "reason": norm(record["reason"]),
            "flags": sorted(norm(f) for f in record["flags"]),
            "repairs": [norm(r) for r in record["repairs"]],
            "cells": {g: (c["points"], c["status"], norm(c["message"])) for g, c in record["cells"].items()}}


@pytest.fixture(scope="module")
def two_graders(tmp_path_factory):
    import test_bad_submissions as bad

    tmp = tmp_path_factory.mktemp("buttons")
    kinds = {k.name: k for k in bad.KINDS}
    server = bad._serve_loopback()
    course = load_course(ROOT)
    assignment = Assignment.load(course, AID)
    made, prepare, expected = {}, {}, {}
    for i, name in enumerate(KINDS):
        kind = kinds[name]
        student = f"bad-{i:02d}"
        # ctx as in test_bad_submissions; the gradebook each grader protects is its own course's
        ctx = {"root": ROOT, "db": "<course>/gradebook.db", "port": server.getsockname()[1],
               "submissions": Path("<course>/submitted"), "copy": tmp / "no-copy"}
        made[student] = kind.make(ctx)
        if kind.prepare:
            prepare[student] = kind.prepare
        expected[student] = kind
    made["good-solution"] = bad._solution()
    made["good-blank"] = bad._release()
    made["good-partial"] = apply(assignment, load_catalogue(course, assignment)[0])

    by_course = _course_with_submissions(tmp / "by-course", {}, {})
    by_nbgrader = _course_with_submissions(tmp / "by-nbgrader", {}, {})
    for course_dir in (by_course, by_nbgrader):
        originals = {s: (nb if isinstance(nb, bytes) else nbformat.from_dict(json.loads(json.dumps(nb))))
                     for s, nb in made.items()}
        for student, nb in originals.items():
            if not isinstance(nb, bytes):
                for cell in nb.cells:
                    cell.source = cell.source.replace("<course>", str(course_dir))
            path = course_dir / "submitted" / student / AID / f"{AID}.ipynb"
            path.parent.mkdir(parents=True)
            if isinstance(nb, bytes):
                path.write_bytes(nb)
            else:
                nbformat.write(nb, str(path))
            if student in prepare:
                prepare[student](None, path)
    import time

    assert run(["course", "build", AID], cwd=by_course).returncode == 0
    start = time.monotonic()
    graded = run(["course", "grade", AID, "--profile", "strict", "--workers", "2"], cwd=by_course)
    course_s = time.monotonic() - start
    assert graded.returncode == 0, graded.stderr[-3000:]
    built = run(["nbgrader", "generate_assignment", AID, "--force"], cwd=by_nbgrader)
    assert built.returncode == 0, built.stderr[-3000:]
    start = time.monotonic()
    stock = run(["nbgrader", "autograde", AID, "--SandboxedAutograde.profile=strict", "--debug"], cwd=by_nbgrader)
    nbgrader_s = time.monotonic() - start
    server.close()
    print(f"\ncourse grade: {course_s:.1f} s, nbgrader autograde: {nbgrader_s:.1f} s for {len(made)} submissions")
    yield {"by_course": by_course, "by_nbgrader": by_nbgrader, "expected": expected, "stock": stock,
           "students": list(made), "seconds": (course_s, nbgrader_s)}


def test_stock_autograde_runs_no_student_code_itself(two_graders):
    stock = two_graders["stock"]
    assert stock.returncode == 0, stock.stderr[-3000:]
    log = stock.stdout + stock.stderr
    assert "Applying preprocessor: SandboxedAutograde" in log
    assert "Applying preprocessor: Execute" not in log  # nbgrader's own execution never ran
    assert "PWNED" not in log


def test_stock_autograde_matches_course_grade(two_graders):
    a, b = two_graders["by_course"], two_graders["by_nbgrader"]
    ra, rb = _records(a), _records(b)
    assert set(ra) == set(rb) == set(two_graders["students"])
    for student in ra:
        left, right = _comparable(ra[student], a), _comparable(rb[student], b)
        kind = two_graders["expected"].get(student)
        if kind is not None and " or " in kind.status:  # a race decides which of the two
            assert right["status"] in kind.status.split(" or ")
            continue
        assert left == right, f"{student} ({kind.name if kind else 'good'}): course {left} != nbgrader {right}"


def test_stock_autograde_outcomes_are_the_catalogues(two_graders):
    rb = _records(two_graders["by_nbgrader"])
    for student, kind in two_graders["expected"].items():
        record = rb[student]
        where = f"{kind.name}: {record['status']} {record['score']} {record['reason']!r} {record['flags']}"
        assert record["status"] in kind.status.split(" or "), where
        if kind.score is not None:
            assert record["score"] == kind.score, where


def test_stock_autograde_gradebook_is_the_graders(two_graders):
    from nbgrader.api import Gradebook

    b = two_graders["by_nbgrader"]
    rb = _records(b)
    with Gradebook(f"sqlite:///{b}/gradebook.db") as gb:
        for student, record in rb.items():
            sub = gb.find_submission(AID, student)
            assert sub.score == record["score"], student
        assert gb.find_submission(AID, "good-solution").score == 22
        assert gb.find_submission(AID, "good-blank").score == 0
        assert gb.find_submission(AID, "good-partial").score == 19
    # the notebook nbgrader wrote for a link to the source is the release, never the source
    linked = next(s for s, k in two_graders["expected"].items() if k.name == "a symbolic link to the source")
    text = (b / "autograded" / linked / AID / f"{AID}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in text and "Not graded" in text


# --- feedback ---------------------------------------------------------------------------------

def hidden_lines(aid: str) -> list[str]:
    """Every line of a hidden test block that the release does not also show (as a line, or
    inside one of its lines)."""
    source = read_notebook(ROOT / "source" / aid / f"{aid}.ipynb")
    release = read_notebook(ROOT / "release" / aid / f"{aid}.ipynb")
    visible = "\n".join(line.strip() for c in release.cells for line in c.source.splitlines())
    hidden, inside = [], False
    for cell in source.cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip() and f"\n{line.strip()}\n" not in f"\n{visible}\n" \
                    and (len(line.strip()) < 16 or line.strip() not in visible):
                hidden.append(line.strip())
    return hidden


def leaked(page: Path, hidden: list[str], own: set[str]) -> list[str]:
    """Hidden lines on a page: whole lines, and any longer line anywhere in the text; lines the
    student wrote themselves in their submission do not count."""
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    lines = {line.strip() for line in text.splitlines()}
    mine = "\n".join(sorted(own))
    return [h for h in hidden if h not in mine and (h in lines or (len(h) >= 16 and h in text))]


@pytest.fixture(scope="module")
def feedback_class(tmp_path_factory):
    """Every assignment: a full solution, an untouched release and a catalogued mistake each,
    autograded by stock `nbgrader autograde`, then feedback both ways."""
    course_dir = copy_course(tmp_path_factory.mktemp("feedback") / "course")
    course = load_course(ROOT)
    ids = assignments()
    own: dict[tuple[str, str], set[str]] = {}
    for aid in ids:
        assignment = Assignment.load(course, aid)
        subs = {"solver": read_notebook(ROOT / "solutions" / aid / f"{aid}.ipynb"),
                "blank": read_notebook(ROOT / "release" / aid / f"{aid}.ipynb"),
                "mistaken": apply(assignment, load_catalogue(course, assignment)[0])}
        for student, nb in subs.items():
            path = course_dir / "submitted" / student / aid / f"{aid}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(nb, str(path))
            own[(student, aid)] = {line.strip() for c in nb.cells for line in c.source.splitlines()}
    assert run(["course", "build", *ids], cwd=course_dir).returncode == 0
    for aid in ids:
        result = run(["nbgrader", "autograde", aid], cwd=course_dir)
        assert result.returncode == 0, result.stderr[-3000:]
    pages = {}
    for aid in ids:
        result = run(["nbgrader", "generate_feedback", aid], cwd=course_dir)
        assert result.returncode == 0, result.stderr[-3000:]
    pages["command"] = {p: p.read_text() for p in course_dir.glob("feedback/*/*/*.html")}
    shutil.rmtree(course_dir / "feedback")
    # formgrader's button: NbGraderAPI.generate_feedback, configured as formgrader loads it
    script = (
        "import sys\n"
        "from nbgrader.apps import NbGraderAPI\n"
        "from nbgrader.apps.baseapp import NbGrader\n"
        "app = NbGrader(); app.initialize([])\n"
        "api = NbGraderAPI(parent=app)\n"
        "for aid in sys.argv[1:]:\n"
        "    r = api.generate_feedback(aid)\n"
        "    assert r['success'], r\n")
    result = run(["python", "-c", script, *ids], cwd=course_dir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    pages["button"] = {p: p.read_text() for p in course_dir.glob("feedback/*/*/*.html")}
    return {"dir": course_dir, "pages": pages, "own": own, "ids": ids}


@pytest.mark.parametrize("way", ["command", "button"])
def test_nbgrader_feedback_has_no_hidden_test_code(feedback_class, way):
    pages = feedback_class["pages"][way]
    assert len(pages) == 3 * len(feedback_class["ids"])
    found = {}
    for path in pages:
        student, aid = path.parent.parent.name, path.parent.name
        bad = leaked(path, hidden_lines(aid), feedback_class["own"][(student, aid)])
        if bad:
            found[f"{student}/{aid}"] = bad[:5]
    assert not found, found


def test_nbgrader_feedback_shows_each_failed_tests_message(feedback_class):
    course_dir = feedback_class["dir"]
    for aid in feedback_class["ids"]:
        record = json.loads((course_dir / "autograded" / "mistaken" / aid / "grading.json").read_text())
        page = html.unescape((course_dir / "feedback" / "mistaken" / aid / f"{aid}.html").read_text())
        failed = [c for c in record["cells"].values() if c["status"] != "pass"]
        assert failed, aid
        for cell in failed:
            first = cell["message"].splitlines()[0][:60]
            assert first in page, (aid, first)
        assert not (course_dir / "feedback" / "mistaken" / aid / "grading.json").exists()


# --- the classroom's round trip through nbgrader's exchange (no browser) -----------------------

def test_classroom_round_trip_through_the_exchange(tmp_path):
    """What the buttons of a hub do, as their commands: the instructor releases through a file
    exchange, two students fetch, fill (one right, one wrong, the wrong one also tampering),
    submit; the instructor collects, autogrades, generates and releases feedback; each student
    fetches feedback: their grade, their messages, no hidden test code."""
    course_dir = copy_course(tmp_path / "course")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    ex = f"--Exchange.root={exchange}"
    course_id = load_course(ROOT).course_id
    course = load_course(ROOT)
    assignment = Assignment.load(course, AID)

    def ok(args, cwd, student=None):
        # each student has a home of their own, as on a hub (nbgrader's submission cache lives there)
        env = {"HOME": str(cwd), "JUPYTER_DATA_DIR": str(cwd / ".local-jupyter")} if student else None
        result = run(args, cwd=cwd, env=env)
        assert result.returncode == 0, (args, (result.stdout + result.stderr)[-3000:])
        return result

    ok(["nbgrader", "generate_assignment", AID, "--force"], course_dir)
    ok(["nbgrader", "release_assignment", AID, ex], course_dir)
    wrong = apply(assignment, load_catalogue(course, assignment)[0])
    wrong.cells.insert(2, nbformat.v4.new_code_cell(
        "get_ipython().input_transformers_post.append(lambda lines: [])"))  # blanks later cells in a kernel
    answers = {"ada": read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb"), "bob": wrong}
    for student, nb in answers.items():
        home = tmp_path / student
        home.mkdir()
        ok(["nbgrader", "fetch_assignment", AID, "--course", course_id, ex], home, student)
        fetched = home / AID / f"{AID}.ipynb"
        assert fetched.is_file() and "BEGIN HIDDEN TESTS" not in fetched.read_text()
        nbformat.write(nb, str(fetched))
        ok(["nbgrader", "submit", AID, "--course", course_id, "--student", student, ex], home, student)
    ok(["nbgrader", "collect", AID, ex], course_dir)
    ok(["nbgrader", "autograde", AID], course_dir)
    ok(["nbgrader", "generate_feedback", AID], course_dir)
    ok(["nbgrader", "release_feedback", AID, ex], course_dir)
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course_dir}/gradebook.db") as gb:
        assert gb.find_submission(AID, "ada").score == 22
        assert gb.find_submission(AID, "bob").score == 19
    hidden = hidden_lines(AID)
    for student, nb in answers.items():
        home = tmp_path / student
        ok(["nbgrader", "fetch_feedback", AID, "--course", course_id, "--student", student, ex], home, student)
        pages = list((home / AID / "feedback").glob(f"*/{AID}.html"))
        assert len(pages) == 1, student
        own = {line.strip() for c in nb.cells for line in c.source.splitlines()}
        assert not leaked(pages[0], hidden, own), student
        record = json.loads((course_dir / "autograded" / student / AID / "grading.json").read_text())
        text = html.unescape(pages[0].read_text())
        for cell in record["cells"].values():
            if cell["status"] != "pass":
                assert cell["message"].splitlines()[0][:60] in text, (student, cell)
