"""Otter and Gradescope grading through the project's own grader.

How a submission gets here. Gradescope runs the zip's `run_autograder`, which runs otter's
`run_otter.py`; `otter run -a <zip> <notebook>` calls the same otter function in-process. Both
build otter's PythonRunner, which loads the plugins named in the zip's otter_config.json before
it executes anything. The zip names `CourseGrader` (below), so on both paths:

1. `before_execution` grades the submission file with `grade_notebook` (sandbox, limits,
   tamper checks, partial credit, stderr harmless), exactly as `course grade` does, and hands
   otter an empty notebook in place of the student's, so otter's plain kernel never runs a
   line of student code (it runs otter's own test harness on nothing, which scores nothing);
2. `after_grading` replaces otter's results with ours: one Gradescope test per graded cell
   with its points, maximum and teaching message (never test code), and an output that says
   how the submission was graded (its status, why it stopped, flags, the sandbox it got).

`run_test` is the other half: the student's `grader.check("test-...")` in the otter notebook
runs a test cell's code the way the grader's executor runs it and fails with the same message.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from otter.plugins import AbstractOtterPlugin
from otter.test_files import GradingResults
from otter.test_files.abstract_test import TestFile

from .config import Profile
from .grading import Graded, Record
from .notebook_check import MARKS, verdict  # verdict: the grader's wording, in the student's kernel

# otter's own cells in its student notebook: the init cell and the grader.check cells
OTTER_CELL = re.compile(r"\A(# Initialize Otter[ \t]*\n)?import otter[ \t]*\ngrader = otter\.Notebook\([^\n]*\)\s*\Z"
                        r"|\Agrader\.check(_all)?\([^\n]*\)\s*\Z")


# --- grading a submission --------------------------------------------------------------------

def find_bundle(submission_path: str | Path, bundle: str = "course") -> Path:
    """The course bundle of the zip: <autograder>/source/files/<bundle> (otter also copies it
    beside the submission)."""
    sub = Path(submission_path).resolve()
    for candidate in (sub.parent.parent / "source" / "files" / bundle, sub.parent / bundle):
        if (candidate / "course_config.py").is_file():
            return candidate
    raise FileNotFoundError(f"no course bundle {bundle}/ in the autograder (looked beside {sub})")


def prepare(raw: bytes, stubs: dict[str, str], release_stubs: dict[str, str]):
    """The submission as the grader should see it: otter's own cells (its init cell, its
    grader.check cells) removed, and answer cells still holding otter's stub turned into the
    nbgrader stub, so that an untouched answer is "not attempted" exactly as in `course grade`.
    Returns raw bytes unchanged when the file is not a notebook (the grader says why)."""
    from .notebooks import NotebookError, grade_id, parse_notebook

    try:
        nb = parse_notebook(raw, "the submission")
    except NotebookError:
        return raw
    kept = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid is None and cell.cell_type == "code" and OTTER_CELL.match(cell.source or ""):
            continue
        if gid in stubs and cell.cell_type == "code" and cell.source.strip() == stubs[gid].strip():
            cell.source = release_stubs.get(gid, cell.source)
        kept.append(cell)
    nb.cells = kept
    return nb


def grade_file(submission: str | Path, assignment_id: str, bundle: Path, *, profile: "str | Profile" = "cpu",
               sandbox: str | None = "best-effort", hide_extra: list[str] | None = None) -> Graded:
    """Grade one submitted notebook file with the course's grader, as the zip does: the
    Graded record and notebook of `grade_notebook`, with the bundle, the submission's folder
    and the whole autograder folder (tests, results) hidden from the submission."""
    from .assignment import Assignment
    from .config import load_course, load_profile
    from .grading import grade_notebook, hidden_paths
    from .notebooks import role

    course = load_course(Path(bundle))
    assignment = Assignment.load(course, assignment_id)
    prof = profile if isinstance(profile, Profile) else load_profile(course, profile)
    if sandbox:
        prof = dataclasses.replace(prof, sandbox=sandbox)
    stubs_path = Path(bundle) / "otter_stubs.json"
    stubs = json.loads(stubs_path.read_text()) if stubs_path.is_file() else {}
    release_stubs = {gid: assignment.release_by_id[gid].source for gid in assignment.answers}
    raw = Path(submission).read_bytes()
    nb = raw if len(raw) > prof.max_notebook_mb * 1024 * 1024 else prepare(raw, stubs, release_stubs)
    sub = Path(submission).resolve()
    extra = [str(sub.parent), *(hide_extra or [])]
    if (sub.parent.parent / "source").is_dir():
        extra.append(str(sub.parent.parent))  # the whole autograder folder: source, tests, results
    graded = grade_notebook(assignment, nb, "submission", prof, hide=hidden_paths(course, extra))
    record = graded.record
    if not isinstance(nb, bytes) and not any(role(c) == "test" for c in nb.cells):
        # an otter notebook has no test cells by design (grader.check cells stand for them)
        record.repairs = [r for r in record.repairs if not (r.startswith("test cell(s) ")
                                                             and r.endswith("were deleted; they were restored"))]
    return graded


def grade_submission(submission: str | Path, assignment_id: str, bundle: Path, **kwargs) -> Record:
    """The record of grade_file."""
    return grade_file(submission, assignment_id, bundle, **kwargs).record


def cell_text(gid: str, cell, exercises: dict[str, str]) -> str:
    """What a student reads for one graded cell: the same text `course check` prints."""
    mark = MARKS.get(cell.status, "?")
    text = cell.message or ("Passed." if cell.status == "pass" else "")
    if cell.status != "pass" and exercises.get(gid):
        text += f" (Hints: under “{exercises[gid]}”.)"
    return f"{mark} {cell.status}: {text}".rstrip()


def summary_text(record: Record) -> str:
    lines = [f"Graded by the course's own grader (torchcourse): score {record.score:g} / {record.max_score:g}, "
             f"status {record.status}" + (f" ({record.reason})" if record.reason else "") + "."]
    if record.sandbox:
        lines.append(f"Sandbox: {record.sandbox}" + ("" if record.sandbox != "none" else
                     " (this machine allows no namespaces: limits and tamper checks applied, "
                     "no isolation; sandbox = \"best-effort\")") + ".")
    lines += [f"Flag: {f}" for f in record.flags]
    lines += [f"Note: {r}" for r in record.repairs]
    return "\n".join(lines)


def gradescope_results(record: Record, exercises: dict[str, str], visibility: str = "visible") -> dict:
    """results.json for Gradescope: one test per graded cell, in notebook order."""
    tests = [{"name": gid, "score": cell.points, "max_score": cell.max_points,
              "status": "passed" if cell.status == "pass" else "failed",
              "visibility": visibility, "output": cell_text(gid, cell, exercises)}
             for gid, cell in record.cells.items()]
    return {"score": record.score, "output": summary_text(record), "tests": tests,
            "stdout_visibility": "hidden"}


class CellResult(TestFile):
    """One graded cell as an otter TestFile, so that otter's own code (its summary, its
    pickled results, `otter run`'s report) shows our scores and messages."""

    def __init__(self, gid: str, points: float, max_points: float, text: str, passed: bool) -> None:
        super().__init__(gid, gid, [], all_or_nothing=True)
        self._points, self._max, self.text, self.passed = points, max_points, text, passed

    @property
    def score(self):
        return self._points

    @property
    def possible(self):
        return self._max

    @property
    def passed_all(self) -> bool:
        return self.passed

    passed_all_public = passed_all

    def summary(self, public_only: bool = False) -> str:
        return f"{self.name}: {self._points:g} / {self._max:g}\n{self.text}"

    def run(self, global_environment):  # pragma: no cover - never run: the grader ran it
        raise NotImplementedError

    @classmethod
    def from_file(cls, path):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_metadata(cls, s, path):  # pragma: no cover
        raise NotImplementedError


class CourseResults(GradingResults):
    """Otter's results object, with results.json written from our record."""

    record: Record
    exercises: dict[str, str]
    visibility: str

    def to_gradescope_dict(self, ag_config) -> dict[str, Any]:
        return gradescope_results(self.record, self.exercises, self.visibility)


def _course_roots() -> list[str]:
    """`otter run` on an instructor's machine: the course folder it was started from (or
    COURSE_ROOT) holds the solutions and hidden tests, so it is hidden too."""
    from .config import CourseError, find_root

    roots = []
    for start in (os.environ.get("PWD"), os.environ.get("COURSE_ROOT")):
        if start and Path(start).is_dir():
            try:
                roots.append(str(find_root(Path(start))))
            except CourseError:
                pass
    return roots


class CourseGrader(AbstractOtterPlugin):
    """The otter plugin of the autograder zip (see the module docstring). Its configuration
    in otter_config.json: assignment, bundle (folder under the zip's files/), profile (a
    graders/*.toml of the bundle), sandbox (best-effort unless the container allows
    namespaces for "required"), visibility (of each cell's result on Gradescope)."""

    def _config(self, key: str, default: Any) -> Any:
        return (self.plugin_config or {}).get(key, default)

    def before_execution(self, submission):
        import nbformat

        from .assignment import Assignment
        from .config import load_course

        bundle = find_bundle(self.submission_path, self._config("bundle", "course"))
        aid = self._config("assignment", None)
        self.record = grade_submission(self.submission_path, aid, bundle,
                                       profile=self._config("profile", "cpu"),
                                       sandbox=self._config("sandbox", "best-effort"),
                                       hide_extra=[*self._config("hide", []), *_course_roots()])
        self.exercises = Assignment.load(load_course(bundle), aid).exercise
        # otter's plain kernel gets nothing of the student's to run
        empty = nbformat.v4.new_notebook()
        empty.metadata = copy.deepcopy(submission.get("metadata", {})) if isinstance(submission, dict) else {}
        return empty if not isinstance(submission, str) else ""

    def after_grading(self, results: GradingResults) -> None:
        record = self.record
        results.results = {gid: CellResult(gid, c.points, c.max_points, cell_text(gid, c, self.exercises),
                                           c.status == "pass")
                           for gid, c in record.cells.items()}
        results.__class__ = CourseResults
        results.record, results.exercises = record, self.exercises
        results.visibility = self._config("visibility", "visible")
        results.set_output(summary_text(record))
        results.set_plugin_data(type(self).__module__ + "." + type(self).__name__, record.to_json())

    def generate_report(self) -> str:
        record = getattr(self, "record", None)
        return summary_text(record) if record is not None else ""


# --- grader.check in the student's notebook -------------------------------------------------

class TestFailed(AssertionError):
    """Raised by run_test with the grader's message; otter shows it under the test's name."""


def run_test(env: dict, label: str, case: Any, cells: dict[str, str] | None = None) -> None:
    """The body of every otter test case `course otter` writes: run the code held in the test
    function's docstring; raise TestFailed with the grader's message unless it passes. `cells`
    maps the answers' functions and classes to their cells, to name them as the grader does."""
    func = getattr(case, "test_func", case)
    code = func.__doc__ or ""
    status, message = verdict(code, label, env, cells)
    if status != "pass":
        raise TestFailed(message)


__all__ = ["CourseGrader", "grade_submission", "gradescope_results", "run_test", "verdict"]
