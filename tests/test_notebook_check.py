"""The check under every exercise (torchcourse/notebook_check.py).

- The build puts one check cell after every exercise's tests, in release/ and solutions/, for
  every assignment (so assignments written later get theirs from `course build` too).
- Grading never runs check cells: a submission whose check cells raise, exit, print fake
  verdicts, patch torch, define the right answer, are deleted or moved, or run as a student's
  own cell, gets exactly the record of the same submission with untouched check cells, through
  `grade_notebook` (which `course grade`, `course check`, a Dask worker, stock `nbgrader
  autograde` and the otter zip all call), the otter plugin's own entry point, and stock
  `nbgrader autograde` from the command line.
- In a kernel (nbclient, as Jupyter runs it): in a bare release the check runs the visible
  tests with the grader's wording and never claims points hidden tests decide, nor judges a
  prediction; in a clone of the whole course it reports every test (hidden ones included) from
  the grader, without any hidden test code reaching the kernel, one grading per saved version.
"""
from __future__ import annotations

import copy
import json
import os
import re

import nbformat
import pytest

from conftest import BIN, ROOT, assignments, copy_course, run
from torchcourse.assignment import Assignment
from torchcourse.grading import grade_notebook, hidden_paths
from torchcourse.mistakes import apply, load_catalogue
from torchcourse.notebook_check import META, check_cell_source, exercise_groups, is_check_cell
from torchcourse.notebooks import grade_id, read_notebook

AID = "01_introduction"
EDITED = "a check cell was edited; check cells never run when a notebook is graded, so its code did not count"


# --- the build ----------------------------------------------------------------------------------

@pytest.mark.parametrize("part", ["release", "solutions"])
@pytest.mark.parametrize("aid", assignments())
def test_one_check_cell_under_every_exercise(course, aid, part):
    source = read_notebook(course.source_notebook(aid))
    built = read_notebook(ROOT / part / aid / f"{aid}.ipynb")
    groups = exercise_groups(source.cells)
    assert groups and sum(len(g["tests"]) for g in groups) == sum(1 for c in source.cells if
                                                                  (c.metadata.get("nbgrader") or {}).get("grade"))
    checks_found = [(i, c) for i, c in enumerate(built.cells) if is_check_cell(c)]
    assert len(checks_found) == len(groups), f"{part}/{aid}: {len(checks_found)} check cells for {len(groups)} exercises"
    by_id = {grade_id(c): c for c in source.cells if grade_id(c)}
    for group, (index, cell) in zip(groups, checks_found):
        assert grade_id(built.cells[index - 1]) == group["tests"][-1], "a check cell sits right under its exercise's last test"
        assert cell.source == check_cell_source(group["tests"])
        meta = cell.metadata[META]
        assert meta["check"] == group["tests"]
        assert meta["hidden"] == [t for t in group["tests"] if "BEGIN HIDDEN TESTS" in by_id[t].source]
        assert cell.metadata["editable"] is False and "nbgrader" not in cell.metadata
    # nbgrader's view is untouched: the same graded and locked cells as the source
    assert [grade_id(c) for c in built.cells if grade_id(c)] == [grade_id(c) for c in source.cells if grade_id(c)]


@pytest.mark.parametrize("aid", assignments())
def test_stubs_the_grader_derives_are_the_releases(course, aid):
    """The grader takes each answer's stub from the source (a self-learner's release/ file holds
    answers): the same text as the committed release's."""
    from torchcourse.assignment import answer_stubs

    release = read_notebook(ROOT / "release" / aid / f"{aid}.ipynb")
    stubs = answer_stubs(course, read_notebook(course.source_notebook(aid)))
    answers = {grade_id(c): c.source for c in release.cells if (c.metadata.get("nbgrader") or {}).get("solution")}
    assert stubs == answers


# --- grading ignores check cells ---------------------------------------------------------------

def _check_cells(nb):
    return [c for c in nb.cells if is_check_cell(c)]


def _tamper(base, how: str, fix: str = ""):
    nb = copy.deepcopy(base)
    cells = _check_cells(nb)
    assert cells
    if how == "deleted":
        nb.cells = [c for c in nb.cells if not is_check_cell(c)]
    elif how == "moved":
        nb.cells = cells + [c for c in nb.cells if not is_check_cell(c)]
    elif how == "unmarked":  # the check line runs as a student's own cell: it must do nothing
        for c in cells:
            del c.metadata[META]
    else:
        code = {"raises": "raise RuntimeError('boom')",
                "exits": "import os\nos._exit(0)",
                "fake": "print('  ✓ test-grow  3/3\\nscore: 22 / 22')",
                "patches": "import torch\ntorch.allclose = lambda *a, **k: True",
                "fixes": fix}[how]
        for c in cells:
            c.source = code
        if how == "fixes":  # the right answer, in a check cell moved between the wrong answer and its tests
            nb.cells.remove(cells[0])
            at = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "grow")
            nb.cells.insert(at + 1, cells[0])
    return nb


HOWS = ["raises", "exits", "fake", "patches", "fixes", "deleted", "moved", "unmarked"]


def _comparable(record) -> dict:
    return {"status": record.status, "score": record.score, "flags": record.flags,
            "cells": {g: (c.points, c.status, c.message) for g, c in record.cells.items()},
            "repairs": [r for r in record.repairs if r != EDITED]}


@pytest.fixture(scope="module")
def bases(course):
    assignment = Assignment.load(course, AID)
    solution = read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb")
    wrong = apply(assignment, next(m for m in load_catalogue(course, assignment) if m.cell == "grow"))
    # a wrong notebook as a student has it: the release's cells (check cells included), one wrong answer
    release = read_notebook(ROOT / "release" / AID / f"{AID}.ipynb")
    answers = {grade_id(c): c.source for c in wrong.cells if grade_id(c) in assignment.answers}
    for c in release.cells:
        if grade_id(c) in answers:
            c.source = answers[grade_id(c)]
    right_grow = next(c.source for c in solution.cells if grade_id(c) == "grow")
    return assignment, {"solution": solution, "wrong": release}, right_grow


def test_grading_never_runs_check_cells(bases, profile, course):
    assignment, notebooks, right_grow = bases
    hide = hidden_paths(course)
    for name, base in notebooks.items():
        expected = grade_notebook(assignment, base, "base", profile, hide=hide).record
        assert expected.status == "graded" and not expected.repairs, expected.repairs
        assert (expected.score == expected.max_score) == (name == "solution"), expected.score
        for how in HOWS:
            record = grade_notebook(assignment, _tamper(base, how, fix=right_grow), how, profile, hide=hide).record
            assert _comparable(record) == _comparable(expected), (name, how)
            edited = how in ("raises", "exits", "fake", "patches", "fixes")
            assert (EDITED in record.repairs) == edited, (name, how, record.repairs)


def test_otter_plugin_ignores_check_cells(bases, profile, tmp_path):
    """The otter zip's entry point (grade_file: otter's cells dropped, then grade_notebook),
    with a copy of the course as its bundle."""
    from torchcourse import otter_grade

    assignment, notebooks, right_grow = bases
    bundle = copy_course(tmp_path / "bundle")
    scores = {}
    for how in ("plain", "fixes", "exits"):
        nb = notebooks["wrong"] if how == "plain" else _tamper(notebooks["wrong"], how, fix=right_grow)
        path = tmp_path / "sub" / how / f"{AID}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
        record = otter_grade.grade_submission(path, AID, bundle, profile=profile, sandbox="best-effort")
        scores[how] = (record.status, {g: c.points for g, c in record.cells.items()})
    assert scores["fixes"] == scores["plain"] == scores["exits"]
    assert sum(scores["plain"][1].values()) < assignment.total


@pytest.mark.slow
def test_stock_nbgrader_autograde_ignores_check_cells(bases, tmp_path):
    """`nbgrader autograde` (formgrader's button) and `course grade` on the same tampered class."""
    assignment, notebooks, right_grow = bases
    made = {"plain-wrong": notebooks["wrong"], "fixes-wrong": _tamper(notebooks["wrong"], "fixes", fix=right_grow),
            "plain-solution": notebooks["solution"], "exits-solution": _tamper(notebooks["solution"], "exits"),
            "fake-solution": _tamper(notebooks["solution"], "fake")}
    results = {}
    for way in ("course", "nbgrader"):
        root = copy_course(tmp_path / way)
        for student, nb in made.items():
            path = root / "submitted" / student / AID / f"{AID}.ipynb"
            path.parent.mkdir(parents=True)
            nbformat.write(nb, str(path))
        if way == "course":
            assert run(["course", "build", AID], cwd=root).returncode == 0
            done = run(["course", "grade", AID, "--workers", "2"], cwd=root)
        else:
            assert run(["nbgrader", "generate_assignment", AID, "--force"], cwd=root).returncode == 0
            done = run(["nbgrader", "autograde", AID], cwd=root)
        assert done.returncode == 0, done.stderr[-2000:]
        results[way] = {}
        for student in made:
            data = json.loads((root / "autograded" / student / AID / "grading.json").read_text())
            results[way][student] = {g: (c["points"], c["status"]) for g, c in data["cells"].items()}
    assert results["course"] == results["nbgrader"]
    got = results["course"]
    assert got["fixes-wrong"] == got["plain-wrong"]
    assert got["exits-solution"] == got["fake-solution"] == got["plain-solution"]
    assert sum(p for p, _ in got["plain-solution"].values()) == assignment.total


# --- in a kernel ----------------------------------------------------------------------------------

def _execute(path, cwd):
    """Run a notebook top to bottom in a fresh Jupyter kernel, errors allowed, as nbgrader
    validate and Jupyter do (no session name: the check finds the file in its folder)."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), 4)
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL", "JPY_SESSION_NAME")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _shown(nb) -> dict[str, str]:
    """Each check cell's printed text, by the tests it checks (the first one names it)."""
    out = {}
    for cell in nb.cells:
        if is_check_cell(cell):
            text = []
            for o in cell.outputs:
                if o.output_type == "stream":
                    text.append(o.text)
                elif o.output_type in ("display_data", "execute_result"):
                    text.append(o.data.get("text/plain", ""))
                elif o.output_type == "error":
                    text.append(f"ERROR {o.ename}: {o.evalue}")
            out[cell.metadata[META]["check"][0]] = "\n".join(text)
    return out


def _answer(nb, gid: str, code: str) -> None:
    next(c for c in nb.cells if grade_id(c) == gid).source = code


WRONG_GROW = "grow = lambda x: float(x) ** 2\ngrow_grad = lambda x: 2.0 * x"
PREDICTIONS_WRONG = 'predictions = {"c.requires_grad": True, "a.grad": 5.0, "b.grad": None}'


def test_check_in_a_bare_release(tmp_path):
    nb = read_notebook(ROOT / "release" / AID / f"{AID}.ipynb")
    _answer(nb, "predictions", PREDICTIONS_WRONG)
    _answer(nb, "grow", WRONG_GROW)
    path = tmp_path / "student" / f"{AID}.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, str(path))
    shown = _shown(_execute(path, path.parent))
    assert len(shown) == len(_check_cells(nb))
    assert not any("ERROR" in t for t in shown.values()), shown
    # a prediction exercise: the format passes, and nothing says whether a.grad = 5.0 is right
    pred = " ".join(shown["test-predictions"].split())
    assert re.search(r"\? test-predictions\s+\?/3", pred), pred
    assert "decided only when your notebook is graded" in pred and "chain rule" not in pred
    # a wrong answer: the visible test's message, with the grader's wording and the hints
    grow = " ".join(shown["test-grow-sanity"].split())
    assert re.search(r"✗ test-grow-sanity\s+0/1", grow), grow
    assert "0-d tensor that is still connected" in grow and "Hints: under “Exercise 2" in grow
    # tests with hidden parts and no visible code: never claimed
    assert re.search(r"\? test-grow\s+\?/3\s+A hidden test", grow), grow
    # an untouched exercise: not attempted, as the grader says it
    depth = shown["test-graph-depth-sanity"]
    assert re.search(r"· test-graph-depth-sanity\s+0/1\s+Not attempted", depth), depth
    assert "still has the stub" not in depth  # that note is for visible checks that pass on a saved stub


def test_check_in_a_clone_of_the_course(tmp_path):
    root = copy_course(tmp_path / "course")
    nb = read_notebook(root / "release" / AID / f"{AID}.ipynb")
    _answer(nb, "predictions", PREDICTIONS_WRONG)
    marker = "_cache_size = len(__import__('torchcourse.notebook_check').notebook_check._cache)"
    nb.cells.append(nbformat.v4.new_code_cell(marker + "\nprint('gradings:', _cache_size)"))
    nbformat.write(nb, str(root / "release" / AID / f"{AID}.ipynb"))
    done = _execute(root / "release" / AID / f"{AID}.ipynb", root / "release" / AID)
    shown = _shown(done)
    pred = " ".join(shown["test-predictions"].split())
    # the hidden test's verdict and message, from the grader
    assert "hidden ones included" in pred and re.search(r"✗ test-predictions\s+0/3", pred), pred
    assert "chain rule" in pred and "solutions/01_introduction/01_introduction.ipynb" in pred
    # no hidden test code in any output
    source = read_notebook(ROOT / "source" / AID / f"{AID}.ipynb")
    hidden = {line.strip() for c in source.cells for block in re.findall(r"BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN",
              c.source, flags=re.S) for line in block.splitlines() if len(line.strip()) > 15}
    everything = json.dumps(nbformat.from_dict(done).cells)
    assert hidden and not [line for line in hidden if json.dumps(line)[1:-1] in everything]
    # one grading for the whole Run All (every check cell read the same saved file)
    last = done.cells[-1]
    assert "gradings: 1" in "".join(o.get("text", "") for o in last.outputs), last.outputs
    depth = shown["test-graph-depth-sanity"]
    assert re.search(r"· test-graph-depth-sanity\s+0/1", depth), depth
