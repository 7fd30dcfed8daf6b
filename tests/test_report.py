"""`course report`: the instructor's class report, built from a small class graded in a
throwaway copy of the course with a private gradebook."""
from __future__ import annotations

import base64
import copy
import html
import json
import re
from html.parser import HTMLParser

import nbformat
import pytest

from conftest import ROOT, copy_course, run, tree

AID = "01_introduction"
# student -> catalogue entry they made (mistakes/01_introduction.yaml); two make the same one.
MISTAKES = {
    "cy": 'pick_device hard-codes "cuda"',
    "dan": "one leaf for all points, so gradients accumulate",
    "dee": "one leaf for all points, so gradients accumulate",
    "eve": "graph_depth follows only the first input",
}
TAMPER = "import torch\ntorch.allclose = lambda *args, **kwargs: True\n"


class Rows(HTMLParser):
    """Every table row of a page as a list of cell texts (unescaped), plus the img sources."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "details":
            self._skip += 1
        elif tag == "img":
            self.images.append(dict(attrs).get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "details":
            self._skip -= 1

    def handle_data(self, data):
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def parse(page: str) -> Rows:
    parser = Rows()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """Eight submissions graded in one batch: a solution, an untouched release, four catalogued
    mistakes (one made twice), a submission that patches torch, and a corrupt notebook."""
    from torchcourse.assignment import Assignment
    from torchcourse.config import load_course
    from torchcourse.mistakes import apply, load_catalogue

    base = tmp_path_factory.mktemp("report")
    root = copy_course(base / "course")
    env = {"COURSE_DB_URL": f"sqlite:///{base}/gradebook.db"}
    assert run(["course", "build", AID], cwd=root, env=env).returncode == 0
    course = load_course(root)
    assignment = Assignment.load(course, AID)
    catalogue = {m.name: m for m in load_catalogue(course, assignment)}
    solution = nbformat.read(str(ROOT / "solutions" / AID / f"{AID}.ipynb"), 4)
    tampered = copy.deepcopy(solution)
    tampered.cells.insert(2, nbformat.v4.new_code_cell(TAMPER))
    notebooks = {"ada": solution, "bea": nbformat.read(str(ROOT / "release" / AID / f"{AID}.ipynb"), 4),
                 "mallory": tampered, **{s: apply(assignment, catalogue[m]) for s, m in MISTAKES.items()}}
    for student, nb in notebooks.items():
        path = root / "submitted" / student / AID / f"{AID}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
    corrupt = root / "submitted" / "zed" / AID / f"{AID}.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"cells": [')
    result = run(["course", "grade", AID, "--workers", "2"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    exported = run(["course", "export", AID, "--format", "json"], cwd=root, env=env)
    assert exported.returncode == 0, exported.stderr
    rows = {row["student"]: row for row in json.loads(exported.stdout)}
    report = run(["course", "report", AID], cwd=root, env=env)
    assert report.returncode == 0, report.stderr
    return root, env, rows, report


def test_the_class_was_graded_as_expected(graded_class):
    """What the other tests rely on; if this fails, the grader is at fault, not the report."""
    rows = graded_class[2]
    expected = {s: "graded" for s in ("ada", "bea", *MISTAKES)} | {"mallory": "flagged", "zed": "invalid"}
    assert {s: r["status"] for s, r in rows.items()} == expected, \
        {s: (r["status"], r["reason"]) for s, r in rows.items() if r["status"] != expected.get(s)}
    assert rows["ada"]["score"] == 22 and rows["cy"]["cell_status"]["test-pick-device"] == "fail"
    assert rows["dan"]["messages"]["test-derivative"] == rows["dee"]["messages"]["test-derivative"]


def test_report_help(tmp_path):
    result = run(["course", "report", "--help"], cwd=tmp_path)
    assert result.returncode == 0 and "usage: course report" in result.stdout


def test_report_is_written_atomically(graded_class):
    root, _, _, report = graded_class
    assert "wrote reports/01_introduction.html" in report.stdout
    assert (root / "reports" / f"{AID}.html").is_file()
    assert not list((root / "reports").glob("*.tmp"))


def test_report_embeds_the_plots(graded_class):
    root = graded_class[0]
    page = (root / "reports" / f"{AID}.html").read_text()
    images = parse(page).images
    assert len(images) == 2, images  # the score histogram and the pass-rate chart
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_lists_pass_rates_in_notebook_order(graded_class):
    root, _, rows, _ = graded_class
    table = [r for r in parse((root / "reports" / f"{AID}.html").read_text()).rows
             if r and re.fullmatch(r"test-[\w-]+", r[0])]
    source = nbformat.read(str(ROOT / "source" / AID / f"{AID}.ipynb"), 4)
    order = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
             if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    assert [r[0] for r in table] == order
    n = len(rows)
    for row in table:
        gid = row[0]
        passed = sum(1 for r in rows.values() if r["cell_status"].get(gid) == "pass")
        assert f"{100 * passed / n:.0f}%" in row and f"{passed} / {n}" in row, row


def test_report_ranks_failure_messages(graded_class):
    root, _, rows, _ = graded_class
    table = [r for r in parse((root / "reports" / f"{AID}.html").read_text()).rows if len(r) == 3]
    assert table[0] == ["message", "students", "test cell"]
    failures = {r[0]: (int(r[1]), r[2]) for r in table[1:]}
    expected: dict[str, tuple[set, list]] = {}  # from the export: message -> students, test cells
    for row in rows.values():
        for gid, status in row["cell_status"].items():
            if status in ("fail", "error"):
                students, cells = expected.setdefault(row["messages"][gid], (set(), []))
                students.add(row["student"])
                cells.append(gid) if gid not in cells else None
    assert expected, "the class should have made mistakes"
    assert failures == {m: (len(s), ", ".join(c)) for m, (s, c) in expected.items()}
    counts = [int(r[1]) for r in table[1:]]
    assert counts == sorted(counts, reverse=True)  # the most frequent first
    shared = rows["dee"]["messages"].get("test-derivative")
    if shared and shared == rows["dan"]["messages"].get("test-derivative"):
        assert failures[shared] == (2, "test-derivative") and counts[0] == 2  # among the first
    assert not any("Not attempted" in m for m in failures)  # not attempted is not a mistake


def test_report_counts_statuses_and_lists_flagged(graded_class):
    root, _, rows, _ = graded_class
    page = (root / "reports" / f"{AID}.html").read_text()
    for status in ("graded", "flagged", "timed_out", "out_of_memory", "crashed", "invalid"):
        count = sum(1 for r in rows.values() if r["status"] == status)
        assert f"{status.replace('_', ' ')}: {count}</span>" in page, status
    attention = {r[0]: r for r in parse(page).rows if len(r) == 4 and r[0] in rows}
    assert set(attention) == {s for s, r in rows.items() if r["status"] != "graded" or r["flags"]}
    for student, row in attention.items():
        assert row[1] == rows[student]["status"].replace("_", " ") and rows[student]["reason"] in row[3]
    assert "torch.allclose was replaced" in attention["mallory"][3]
    assert "not valid JSON" in attention["zed"][3]


def test_report_shows_no_hidden_test_code(graded_class):
    root = graded_class[0]
    page = (root / "reports" / f"{AID}.html").read_text()
    assert "HIDDEN TESTS" not in page
    source = nbformat.read(str(ROOT / "source" / AID / f"{AID}.ipynb"), 4)
    hidden = [line.strip() for c in source.cells if "### BEGIN HIDDEN TESTS" in c.source
              for line in c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].splitlines()
              if len(line.strip()) > 15]
    assert hidden
    text = html.unescape(page)
    leaked = [line for line in hidden if line in page or line in text]
    assert not leaked, leaked[:3]


def test_report_of_all_assignments(graded_class):
    root, env, _, _ = graded_class
    result = run(["course", "report"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    assert "wrote reports/course.html" in result.stdout
    assert f'id="{AID}"' in (root / "reports" / "course.html").read_text()


def _one_line_error(result, phrase):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_report_unknown_assignment(course_copy, tmp_path):
    before = tree(course_copy)
    env = {"COURSE_DB_URL": f"sqlite:///{tmp_path}/gb.db"}
    _one_line_error(run(["course", "report", "99_nope"], cwd=course_copy, env=env), "unknown assignment '99_nope'")
    assert tree(course_copy) == before


def test_report_before_grading(course_copy, tmp_path):
    before = tree(course_copy)
    env = {"COURSE_DB_URL": f"sqlite:///{tmp_path}/gb.db"}
    _one_line_error(run(["course", "report", AID], cwd=course_copy, env=env), "nothing graded yet for 01_introduction")
    _one_line_error(run(["course", "report"], cwd=course_copy, env=env), "nothing graded yet")
    assert tree(course_copy) == before
    assert not (tmp_path / "gb.db").exists()  # no empty gradebook left behind either


def test_report_of_an_assignment_nothing_graded_for(graded_class):
    root, env, _, _ = graded_class
    before = tree(root)
    _one_line_error(run(["course", "report", "02_tensors"], cwd=root, env=env), "nothing graded yet for 02_tensors")
    assert tree(root) == before
