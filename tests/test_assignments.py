"""Every assignment: the solution scores full marks, the untouched release scores zero (as
"not attempted", with the grader running to the end), and every catalogued mistake is caught
with its message, with no test cell left unproven."""
from __future__ import annotations

import pytest

from conftest import ROOT, assignments
from torchcourse.assignment import Assignment
from torchcourse.grading import default_workers, grade_notebook, hidden_paths
from torchcourse.mistakes import run as run_catalogue, unproven
from torchcourse.notebooks import read_notebook

pytestmark = pytest.mark.slow


def _grade(course, profile, aid: str, folder: str):
    assignment = Assignment.load(course, aid)
    nb = read_notebook(ROOT / folder / aid / f"{aid}.ipynb")
    return assignment, grade_notebook(assignment, nb, folder, profile, hide=hidden_paths(course)).record


@pytest.mark.parametrize("aid", assignments())
def test_solution_scores_full_marks(course, profile, aid):
    assignment, record = _grade(course, profile, aid, "solutions")
    failing = {g: c.message for g, c in record.cells.items() if c.status != "pass"}
    assert not failing, failing
    assert record.status == "graded", (record.status, record.reason, record.flags)
    assert record.score == record.max_score == course.assignments[aid]
    assert not record.flags and not record.repairs
    assert record.seconds < 60, f"the solution took {record.seconds:.1f} s; the budget is 60 s"


@pytest.mark.parametrize("aid", assignments())
def test_untouched_release_scores_zero(course, profile, aid):
    assignment, record = _grade(course, profile, aid, "release")
    assert record.status == "graded", (record.status, record.reason)  # ran to the end
    assert record.score == 0
    not_attempted = {g: (c.status, c.message) for g, c in record.cells.items() if c.status != "not_attempted"}
    assert not not_attempted, f"cells not reported as 'not attempted': {not_attempted}"


@pytest.mark.parametrize("aid", assignments())
def test_every_catalogued_mistake_is_caught(course, profile, aid):
    assignment = Assignment.load(course, aid)
    outcomes = run_catalogue(course, assignment, profile, workers=default_workers(profile))
    assert len(outcomes) >= 6
    missed = {o.mistake.name: o.detail for o in outcomes if not o.caught}
    assert not missed, missed
    assert unproven(assignment, outcomes) == [], "test cells that no catalogued mistake makes fail"
