"""What course_config.py plugs into stock nbgrader, so that its buttons are as safe as `course`.

Stock `nbgrader autograde` (the command, and formgrader's "autograde" button, which calls the
same converter) and `nbgrader generate_feedback` (command and button) are configured through
nbgrader's own extension points, with no fork of nbgrader:

- `Autograde.exporter_class = TolerantNotebookExporter`: reading a submission never fails
  (a notebook that is not JSON, not UTF-8 or of an old format is read as an empty notebook;
  the grader then judges the raw bytes and records it as `invalid`, as `course grade` does).
- `Autograde.sanitize_preprocessors = [SandboxedAutograde]`: the whole notebook is graded by
  `grading.grade_notebook` (the sandboxed executor, the same code path as `course grade`),
  from the bytes the student submitted; the grader writes autograded/, the record and the
  gradebook exactly as `course grade` does. nbgrader's Execute is never in the list: no student
  code runs in nbgrader's process or in a kernel of its own.
- `Autograde.autograde_preprocessors`: only nbgrader's preprocessors that read or tidy the
  graded notebook (metadata, output limits, late penalties, metadata checks); none executes.
- `GenerateFeedback.preprocessors` starts with `FeedbackWithoutHiddenTests`: every test cell
  shows what the release showed, and its output is only the test's verdict and teaching
  message; hidden test code, and anything a hidden test printed or raised, never reaches the page.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from .config import Course
from .notebooks import grade_id, role


class DropStderrFromTests(NbGraderPreprocessor):
    """Stock nbgrader gives zero to a test cell with any stderr output (utils.determine_grade),
    so a deprecation warning or a progress bar costs a student points for a passing test. This
    moves stderr text of graded test cells into stdout (the text stays visible); errors still
    fail the test. Place it before SaveAutoGrades. (Kept for courses that still run nbgrader's
    own Execute; this course's config grades through SandboxedAutograde instead.)"""

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
        return cell, resources


class TolerantNotebookExporter(NotebookExporter):
    """nbgrader's NotebookExporter, except that a file nbformat cannot read becomes an empty
    notebook instead of an exception that would stop this submission's autograde before the
    grader sees it. SandboxedAutograde grades the submitted bytes, not this notebook."""

    def from_file(self, file_stream, resources=None, **kw):
        try:
            nb = nbformat.read(file_stream, as_version=4)
        except Exception as err:  # noqa: BLE001  (whatever the student handed in)
            nb = nbformat.v4.new_notebook()
            resources = resources if resources is not None else {}
            resources["torchcourse_unreadable"] = f"{type(err).__name__}: {err}"
        return self.from_notebook_node(nb, resources, **kw)


@dataclasses.dataclass
class _CourseOfNbgrader(Course):
    """The course, with the gradebook nbgrader was told to use (not COURSE_DB_URL)."""
    nbgrader_db_url: str = ""

    @property
    def db_url(self) -> str:
        return self.nbgrader_db_url


def _course(resources: ResourcesDict) -> Course:
    """The course nbgrader is converting (nbgrader runs in the course root)."""
    from .config import load_course

    course = load_course(Path(os.getcwd()))
    return _CourseOfNbgrader(**{f.name: getattr(course, f.name) for f in dataclasses.fields(Course)},
                             nbgrader_db_url=resources["nbgrader"]["db_url"])


class SandboxedAutograde(NbGraderPreprocessor):
    """Grades the submitted notebook the way `course grade` does, and returns the graded
    notebook for nbgrader to write to autograded/.

    The submitted file is read again from submitted/<student>/<id>/ with the grader's own rules
    (links refused, size limit), repaired against the source, run cell by cell in a fresh
    sandboxed process forked from the fork server, scored, and stored (autograded/ notebook and
    grading.json, nbgrader's gradebook and the course's record) by `grading._store`, the same
    function `course grade` uses. What nbgrader read (possibly already a link's target) is
    discarded: an invalid submission becomes the release notebook, never the file it points to.
    """

    profile = Unicode("", help="Grader profile (graders/<name>.toml); empty: the course's default").tag(config=True)

    def _setup(self, course, aid: str):
        # loaded for every notebook, never cached: formgrader's server lives for weeks, and
        # the instructor may rebuild an assignment or edit a profile in between
        from .assignment import Assignment
        from .config import load_profile

        return Assignment.load(course, aid), load_profile(course, self.profile or None)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        from nbgrader.coursedir import CourseDirectory

        from .grading import Gradebook, Graded, Submission, _store, grade_notebook, hidden_paths, read_submission, unrun

        info = resources["nbgrader"]
        aid, student, notebook = info["assignment"], info["student"], info["notebook"]
        course = _course(resources)
        if notebook != aid:
            self.log.warning("skipping %s: this course grades one notebook per assignment, %s.ipynb", notebook, aid)
            return nb, resources
        assignment, profile = self._setup(course, aid)
        coursedir = CourseDirectory(config=self.config)
        coursedir.root = str(course.root)
        path = Path(coursedir.format_path(coursedir.submitted_directory, student, aid)) / f"{aid}.ipynb"
        extra = [Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()]
        # nbgrader's exchange holds every student's submissions and feedback: hidden too
        exchange = Path(self.config.get("Exchange", {}).get("root") or "/srv/nbgrader/exchange")
        if exchange.is_dir():
            extra.append(exchange.resolve())
        try:
            raw = read_submission(path, profile.max_notebook_mb)
        except OSError as err:
            graded = Graded(unrun(assignment, student, "invalid", f"the notebook cannot be graded: {err}"), None)
        else:
            try:
                graded = grade_notebook(assignment, raw, student, profile, hide=hidden_paths(course, extra))
            except Exception as err:  # noqa: BLE001  (a grader bug: recorded, as in course grade)
                graded = Graded(unrun(assignment, student, "error",
                                      f"internal grader error: {type(err).__name__}: {err}"), None)
        gradebook = Gradebook(course)
        try:
            record = _store(graded, Submission(student, path), assignment, gradebook, course.root)
        finally:
            gradebook.close()
        self.log.info("%s %s: %s, %g/%g", aid, student, record.status, record.score, record.max_score)
        if graded.notebook is not None:
            out = graded.notebook
        else:  # invalid: what nbgrader writes is the release, never what it read
            out = copy.deepcopy(assignment.release)
            out.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Not graded:** {record.reason}"))
        resources.setdefault("torchcourse", {})["record"] = record.to_json()
        return out, resources


def _verdict_output(status: str, message: str) -> NotebookNode:
    return nbformat.from_dict({"output_type": "error", "ename": status, "evalue": message, "traceback": [message]})


class FeedbackWithoutHiddenTests(NbGraderPreprocessor):
    """Put it first in GenerateFeedback.preprocessors. Test cells show the code the release
    showed (hidden tests stripped) and, as their only output, the verdict with the test's
    teaching message from the grader's record; without a record, only the message of an error
    output the grader wrote. Answer and added cells keep the student's code and outputs; the
    stderr of locked cells is dropped, as in `course feedback`."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        from .grading import Gradebook

        info = resources["nbgrader"]
        aid, student = info["assignment"], info["student"]
        record = None
        release_by_id: dict = {}
        try:
            course = _course(resources)
            from .assignment import Assignment

            release_by_id = Assignment.load(course, aid).release_by_id
            gradebook = Gradebook(course, create=False)
            try:
                record = next((r for r in gradebook.current(aid) if r.student == student), None)
            finally:
                gradebook.close()
        except Exception as err:  # noqa: BLE001  (no course or record: fall back to stripping)
            self.log.warning("feedback for %s/%s without the grader's record (%s)", aid, student, err)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            r, gid = role(cell), grade_id(cell)
            if r == "test" or (utils.is_grade(cell) and not utils.is_solution(cell)):
                cell.source = release_by_id[gid].source if gid in release_by_id else _strip_hidden(cell.source)
                verdict = record.cells.get(gid) if record is not None else None
                if verdict is not None:
                    cell.outputs = [] if verdict.status == "pass" else [_verdict_output(verdict.status, verdict.message)]
                else:
                    cell.outputs = [_verdict_output(o.get("ename", "error"), str(o.get("evalue", "")))
                                    for o in cell.get("outputs", []) if o.get("output_type") == "error"
                                    and o.get("ename") in ("fail", "error", "not_attempted", "not_run", "flagged")]
            elif r == "locked":
                cell.outputs = [o for o in cell.get("outputs", [])
                                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                                and o.get("output_type") != "error"]
        return nb, resources


def _strip_hidden(source: str) -> str:
    """A test cell's source without its hidden block (when the release is not at hand)."""
    out, hidden = [], False
    for line in source.splitlines(keepends=True):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            out.append(line)
    return "".join(out)


__all__ = ["DropStderrFromTests", "TolerantNotebookExporter", "SandboxedAutograde", "FeedbackWithoutHiddenTests"]
