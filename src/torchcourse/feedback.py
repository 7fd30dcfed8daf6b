"""`course feedback`: one HTML page per student, feedback/<student>/<id>/<id>.html.

A page shows the score and status (timed out, crashed, flagged: with the reason), each test's
points and message, and the student's notebook: their own cells with outputs, and for each
test cell only the text the release showed plus the verdict. Hidden test code, and anything a
hidden test printed, never appears.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import bleach
import jinja2
from nbconvert.filters.markdown import markdown2html

from .assignment import Assignment
from .config import Course
from .grading import Record
from .notebook_check import MARKS
from .notebooks import NotebookError, grade_id, read_notebook, role

_ALLOWED_TAGS = sorted(set(bleach.sanitizer.ALLOWED_TAGS) | {"p", "pre", "code", "h1", "h2", "h3", "h4",
                                                              "details", "summary", "br", "hr", "table",
                                                              "tr", "td", "th", "thead", "tbody", "img", "span"})


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("torchcourse", "templates"),
                              autoescape=True, keep_trailing_newline=True)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _outputs(cell) -> list[dict]:
    out = []
    for o in cell.get("outputs", []):
        kind = o.get("output_type")
        if kind == "stream":
            out.append({"text": o.get("text", ""), "cls": o.get("name", "")})
        elif kind in ("execute_result", "display_data"):
            out.append({"text": o.get("data", {}).get("text/plain", ""), "cls": ""})
        elif kind == "error":
            out.append({"text": "\n".join(o.get("traceback", [])) or f"{o.get('ename')}: {o.get('evalue')}",
                        "cls": "stderr"})
    return out


def notebook_view(assignment: Assignment, graded_nb, record: Record) -> list[dict]:
    """The cells a student may see. Test cells: the release text and the verdict only."""
    view = []
    for index, cell in enumerate(graded_nb.cells if graded_nb is not None else []):
        gid, r = grade_id(cell), role(cell)
        anchor = gid or f"cell-{index}"
        if cell.cell_type == "markdown":
            html = markdown2html(cell.source)
            if r != "prose":  # the student's own markdown: sanitize it
                html = bleach.clean(html, tags=_ALLOWED_TAGS, strip=True)
            view.append({"kind": "markdown", "html": html, "id": anchor})
            continue
        if cell.cell_type != "code":
            continue
        if r == "test":
            released = assignment.release_by_id[gid].source
            c = record.cells.get(gid)
            verdict = None if c is None else {"status": c.status, "message": c.message,
                                              "points": c.points, "max_points": c.max_points}
            view.append({"kind": "code", "id": anchor, "title": f"test {gid}", "code": released,
                         "outputs": [], "verdict": verdict})
            continue
        title = {"answer": f"your answer · {gid}", "locked": f"given code · {gid}"}.get(r, "a cell you added")
        outputs = [o for o in _outputs(cell) if r != "locked" or o["cls"] != "stderr"]
        view.append({"kind": "code", "id": anchor, "title": title, "code": cell.source,
                     "outputs": outputs, "verdict": None})
    return view


def render(course: Course, assignment: Assignment, record: Record, graded_nb, graded_at: str = "",
           footer: str = "") -> str:
    return _env().get_template("feedback.html.j2").render(
        course=course.course_id, assignment=assignment.id, student=record.student,
        score=record.score, max_score=record.max_score, status=record.status, reason=record.reason,
        flags=record.flags, repairs=record.repairs, cells=record.cells, marks=MARKS, fmt=_fmt,
        exercises=assignment.exercise, footer=footer,
        notebook=notebook_view(assignment, graded_nb, record), graded_at=graded_at or "")


def write_feedback(course: Course, assignment: Assignment, records: list[Record],
                   output_root: Path | None = None) -> list[Path]:
    root = output_root or course.root
    written = []
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    for record in records:
        nb_path = root / "autograded" / record.student / assignment.id / f"{assignment.id}.ipynb"
        try:
            graded_nb = read_notebook(nb_path) if nb_path.is_file() else None
        except NotebookError:
            graded_nb = None
        html = render(course, assignment, record, graded_nb, stamp)
        out = root / "feedback" / record.student / assignment.id / f"{assignment.id}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
        written.append(out)
    return written
