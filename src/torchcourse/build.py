"""`course build`: source/ -> release/ and solutions/, through nbgrader's own converters.

nbgrader's GenerateAssignment stubs the solutions, strips hidden tests, locks cells and records
the assignment (with its hidden tests) in the gradebook; GenerateSolution writes the solution
version (configured in course_config.py not to execute, so that output is byte-stable).
We add only what nbgrader lacks: checks that the source is well formed before it is built,
and `AddCheckCells`, a preprocessor that course_config.py puts into both converters: the check
line under every exercise (notebook_check.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

from .config import Course, CourseError, venv_bin
from .notebooks import NotebookError, notebook_to_twin, points, read_notebook, role, twin_to_notebook


from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


class AddCheckCells(Preprocessor):
    """After each exercise's last test cell, a locked check cell: `checks.check(<its tests>)`,
    which prints what those tests say (notebook_check.py). Runs on the source, before nbgrader
    clears hidden tests, so that it can record which tests have hidden parts. Grading drops
    these cells; they carry no nbgrader metadata, so nbgrader's gradebook never sees them."""

    enabled = Bool(True)  # nbconvert's preprocessors are off unless enabled

    def preprocess(self, nb, resources):
        from .notebook_check import with_check_cells

        nb.cells = with_check_cells(nb.cells)
        return nb, resources


def twin_path(course: Course, assignment: str) -> Path:
    return course.path("source", assignment, f"{assignment}.pct.py")


def check_source(course: Course, assignment: str) -> None:
    """Refuse to build a source notebook that is malformed, out of sync with its twin, or
    whose points disagree with course_config.py."""
    path = course.source_notebook(assignment)
    try:
        nb = read_notebook(path)
    except NotebookError as err:
        raise CourseError(str(err)) from None
    twin = twin_path(course, assignment)
    if twin.is_file():
        if notebook_to_twin(nb) != notebook_to_twin(twin_to_notebook(twin.read_text(), str(twin))):
            raise CourseError(f"{twin.relative_to(course.root)} and {path.relative_to(course.root)} differ: "
                              f"run `course twin {assignment}` (notebook -> twin) or "
                              f"`course twin {assignment} --from-twin` (twin -> notebook)")
    total = sum(points(c) for c in nb.cells if role(c) == "test")
    want = float(course.assignments[assignment])
    if abs(total - want) > 1e-9:
        raise CourseError(f"{assignment}: its test cells add up to {total:g} points, but "
                          f"course_config.py says {want:g}")
    answers = [c for c in nb.cells if role(c) == "answer"]
    for cell in answers:
        if "BEGIN SOLUTION" not in cell.source:
            raise CourseError(f"{assignment}: answer cell {cell.metadata.nbgrader.grade_id!r} has no "
                              "### BEGIN SOLUTION region, so the release would show the answer")


@contextlib.contextmanager
def quiet_nbgrader(verbose: bool = False):
    """nbgrader logs every file it touches at INFO; keep warnings and errors only."""
    logger = logging.getLogger("traitlets")
    old = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = venv_bin() + os.pathsep + path  # nbgrader runs alembic from PATH
    try:
        with warnings.catch_warnings():
            # nbgrader 0.9 trips SQLAlchemy 2's autoflush warnings on every new submission
            warnings.filterwarnings("ignore", module="nbgrader")
            warnings.filterwarnings("ignore", message=".*not in session.*")
            yield
    finally:
        logger.setLevel(old)
        os.environ["PATH"] = path


def build(course: Course, assignments: list[str], verbose: bool = False, on_step=None) -> list[Path]:
    """Build release/ and solutions/ for each assignment; return the notebooks written."""
    from nbgrader.converters import GenerateAssignment, GenerateSolution
    from nbgrader.converters.base import NbGraderException
    from nbgrader.coursedir import CourseDirectory

    for aid in assignments:
        course.check_assignment(aid)
        check_source(course, aid)
    written = []
    cfg = course.nbgrader_config()
    with quiet_nbgrader(verbose):
        for aid in assignments:
            for converter_class, folder in ((GenerateAssignment, "release"), (GenerateSolution, "solutions")):
                coursedir = CourseDirectory(config=cfg)
                coursedir.assignment_id = aid
                converter = converter_class(coursedir=coursedir, config=cfg)
                converter.force = True
                try:
                    converter.start()
                except NbGraderException as err:
                    raise CourseError(f"nbgrader could not build {aid} into {folder}/: {err}") from None
                written.append(course.path(folder, aid, f"{aid}.ipynb"))
                if on_step:
                    on_step(written[-1])
    return written
