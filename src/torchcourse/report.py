"""`course report [ID]`: the instructor's class report, reports/<ID>.html (or reports/course.html).

Built from the graded records (the same ones feedback and exports use), one section per
assignment: the score distribution, the pass rate of each graded cell in notebook order, the
failure messages most of the class got (the concepts it missed), the status counts, and the
submissions that need a look (flagged, timed out, crashed, invalid). Plots are drawn with
matplotlib's Agg canvas (no display, no global pyplot state) and embedded as base64 PNGs, so
the page is one self-contained file. Only messages appear, never test code.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import io
import statistics
from pathlib import Path

import jinja2

from .config import Course, CourseError
from .grading import STATUSES, Gradebook, Record

INSTRUCTOR_NOTE = " (points set by an instructor)"
TOP_FAILURES = 20
COLORS = {"pass": "#2e8b47", "wrong": "#c94040", "not_attempted": "#e0a526", "other": "#a0a0a0",
          "graded": "#3a6ea5", "not_graded": "#d08c00"}


@dataclasses.dataclass
class CellStats:
    gid: str
    max_points: float
    submissions: int = 0        # records that have this cell
    passed: int = 0
    wrong: int = 0              # fail or error: attempted, and the test found a mistake
    not_attempted: int = 0
    other: int = 0              # not run (the submission stopped) or flagged
    mean_points: float = 0.0

    def rate(self, count: int) -> float:
        return count / self.submissions if self.submissions else 0.0

    @property
    def pass_rate(self) -> float:
        return self.rate(self.passed)


@dataclasses.dataclass
class Failure:
    message: str
    students: list[str]
    cells: list[str]


@dataclasses.dataclass
class Section:
    id: str
    total: float
    records: list[Record]
    statuses: dict[str, int]
    mean: float
    median: float
    full_marks: int
    cells: list[CellStats]
    failures: list[Failure]
    more_failures: int
    attention: list[Record]
    histogram: str = ""         # base64 PNG
    pass_chart: str = ""


# --- numbers ------------------------------------------------------------------------------------

def _passed(cell) -> bool:
    return cell.status == "pass" or (cell.max_points > 0 and cell.points >= cell.max_points)


def _test_order(course: Course, aid: str, records: list[Record]) -> list[str]:
    """Graded cells in notebook order (records store them sorted by name)."""
    seen: dict[str, None] = {}
    try:
        from .assignment import Assignment

        for gid in Assignment.load(course, aid).tests:
            seen[gid] = None
    except (CourseError, OSError):
        pass  # no source any more: fall back to the records' order
    for r in records:
        for gid in r.cells:
            seen.setdefault(gid, None)
    present = {gid for r in records for gid in r.cells}
    return [gid for gid in seen if gid in present]


def _message(text: str) -> str:
    text = text.strip()
    return text[: -len(INSTRUCTOR_NOTE)].strip() if text.endswith(INSTRUCTOR_NOTE) else text


def summarize(course: Course, aid: str, records: list[Record]) -> Section:
    order = _test_order(course, aid, records)
    cells = {gid: CellStats(gid, 0.0) for gid in order}
    failures: dict[str, Failure] = {}
    for r in records:
        for gid in order:
            c = r.cells.get(gid)
            if c is None:
                continue
            s = cells[gid]
            s.max_points = max(s.max_points, c.max_points)
            s.submissions += 1
            s.mean_points += c.points
            if _passed(c):
                s.passed += 1
            elif c.status in ("fail", "error"):
                s.wrong += 1
                message = _message(c.message) or f"({c.status}, no message)"
                f = failures.setdefault(message, Failure(message, [], []))
                if r.student not in f.students:
                    f.students.append(r.student)
                if gid not in f.cells:
                    f.cells.append(gid)
            elif c.status == "not_attempted":
                s.not_attempted += 1
            else:
                s.other += 1
    for s in cells.values():
        s.mean_points = s.mean_points / s.submissions if s.submissions else 0.0
    ranked = sorted(failures.values(), key=lambda f: (-len(f.students), order.index(f.cells[0]), f.message))
    scores = [r.score for r in records]
    total = max((r.max_score for r in records), default=0.0) or float(course.assignments.get(aid, 0) or 0)
    statuses = {status: 0 for status in STATUSES}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    rank = {status: i for i, status in enumerate(["flagged", *STATUSES])}
    attention = sorted((r for r in records if r.status != "graded" or r.flags),
                       key=lambda r: (rank.get(r.status, len(rank)), r.student))
    return Section(
        id=aid, total=total, records=records, statuses=statuses,
        mean=statistics.fmean(scores) if scores else 0.0,
        median=statistics.median(scores) if scores else 0.0,
        full_marks=sum(1 for r in records if r.max_score > 0 and r.score >= r.max_score),
        cells=list(cells.values()), failures=ranked[:TOP_FAILURES],
        more_failures=max(0, len(ranked) - TOP_FAILURES), attention=attention)


# --- plots ----------------------------------------------------------------------------------------

def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def histogram(section: Section) -> str:
    """Scores of the class, stacked: graded submissions, and the others (flagged, crashed...)."""
    import math

    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    total = section.total or max((r.score for r in section.records), default=1.0) or 1.0
    step = max(1.0, math.ceil(total / 25))
    edges = [i * step for i in range(int(math.ceil(total / step)) + 1)]
    if edges[-1] < total:
        edges.append(edges[-1] + step)
    edges.append(edges[-1] + step)  # full marks get a bar of their own: [total, total + step)
    graded = [min(r.score, total) for r in section.records if r.status == "graded"]
    others = [min(r.score, total) for r in section.records if r.status != "graded"]
    fig = Figure(figsize=(7.2, 3.0))
    ax = fig.add_subplot()
    ax.hist([graded, others], bins=edges, stacked=True, align="mid", rwidth=0.9,
            color=[COLORS["graded"], COLORS["not_graded"]],
            label=["graded", "flagged, timed out, crashed or invalid"])
    ax.axvline(section.mean + step / 2, color="#333", linestyle="--", linewidth=1)
    ax.text(section.mean + step / 2, 1.0, f" mean {section.mean:.1f}", transform=ax.get_xaxis_transform(),
            va="top", ha="left", fontsize=9, color="#333")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xticks([e + step / 2 for e in edges[:-1]][:: max(1, len(edges) // 12)])
    ax.set_xticklabels([f"{e:g}" for e in edges[:-1]][:: max(1, len(edges) // 12)])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"score (out of {total:g})")
    ax.set_ylabel("students")
    ax.spines[["top", "right"]].set_visible(False)
    if others:
        ax.legend(frameon=False, fontsize=8, ncols=2, loc="lower left", bbox_to_anchor=(0, 1.02))
    return _png(fig)


def pass_chart(section: Section) -> str:
    """One stacked bar per graded cell, in notebook order: passed, wrong, not attempted, not run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    names = [c.gid for c in section.cells]
    x = list(range(len(names)))
    fig = Figure(figsize=(max(7.2, 0.62 * len(names) + 2.2), 3.8))
    ax = fig.add_subplot()
    bottom = [0.0] * len(names)
    for key, label in (("passed", "passed"), ("wrong", "wrong (the test found a mistake)"),
                       ("not_attempted", "not attempted"), ("other", "not run or flagged")):
        values = [100 * c.rate(getattr(c, key)) for c in section.cells]
        color = COLORS["pass" if key == "passed" else key]
        ax.bar(x, values, bottom=bottom, color=color, width=0.72, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    for i, c in enumerate(section.cells):
        ax.text(i, 101, f"{100 * c.pass_rate:.0f}%", ha="center", va="bottom", fontsize=8, color="#222")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, 112)
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("submissions")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.42))
    return _png(fig)


# --- the page --------------------------------------------------------------------------------------

def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("torchcourse", "templates"),
                              autoescape=True, keep_trailing_newline=True)


def render(course: Course, sections: list[Section], title: str) -> str:
    return _env().get_template("report.html.j2").render(
        course=course.course_id, title=title, sections=sections, statuses=STATUSES,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        fmt=lambda x: f"{x:g}", pct=lambda x: f"{100 * x:.0f}%")


def build(course: Course, aid: str | None = None) -> tuple[str, list[Section]]:
    records = Gradebook(course, create=False).current(aid)
    if not records:
        raise CourseError("nothing graded yet" + (f" for {aid}" if aid else "") + ": run `course grade "
                          + (aid or "ID") + "` first")
    by_assignment: dict[str, list[Record]] = collections.defaultdict(list)
    for r in records:
        by_assignment[r.assignment].append(r)
    order = [a for a in course.assignments if a in by_assignment]
    order += sorted(a for a in by_assignment if a not in order)
    sections = []
    for a in order:
        section = summarize(course, a, sorted(by_assignment[a], key=lambda r: r.student))
        section.histogram = histogram(section)
        section.pass_chart = pass_chart(section) if section.cells else ""
        sections.append(section)
    title = f"{aid} · class report" if aid else "class report · all assignments"
    return render(course, sections, title), sections


def write_report(course: Course, aid: str | None = None) -> tuple[Path, list[Section]]:
    """Write reports/<aid>.html (reports/course.html for all assignments), atomically."""
    html, sections = build(course, aid)
    out = course.path("reports", f"{aid or 'course'}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out, sections
