"""The build: release/ and solutions/ are exactly what a fresh build makes, a second build
changes nothing, nothing secret leaks into release/, and the sources are consistent."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT, assignments, copy_course, run, tree
from torchcourse.build import check_source
from torchcourse.notebooks import read_notebook, role


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("build") / "course")
    for part in ("release", "solutions"):
        for p in (root / part).rglob("*"):
            if p.is_file():
                p.unlink()
    result = run(["course", "build"], cwd=root, env={"COURSE_DB_URL": f"sqlite:///{root}/gb.db"})
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.parametrize("part", ["release", "solutions"])
def test_committed_output_equals_a_fresh_build(fresh_build, part):
    assert _files(fresh_build / part) == _files(ROOT / part), f"{part}/ differs from a fresh `course build`"


def test_second_build_changes_nothing(fresh_build):
    before = {p: b for part in ("release", "solutions") for p, b in _files(fresh_build / part).items()}
    result = run(["course", "build"], cwd=fresh_build, env={"COURSE_DB_URL": f"sqlite:///{fresh_build}/gb.db"})
    assert result.returncode == 0, result.stderr
    after = {p: b for part in ("release", "solutions") for p, b in _files(fresh_build / part).items()}
    assert before == after


def _regions(text: str, begin: str, end: str) -> list[str]:
    return re.findall(rf"{begin}\n(.*?)\n[ \t]*### {end}", text, flags=re.S)


@pytest.mark.parametrize("aid", assignments())
def test_release_holds_no_solution_and_no_hidden_test(course, aid):
    source = read_notebook(course.source_notebook(aid))
    release_text = "\n".join(c.source for c in read_notebook(ROOT / "release" / aid / f"{aid}.ipynb").cells)
    raw = (ROOT / "release" / aid / f"{aid}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in raw, f"{marker} in release/{aid}"
    # Every distinctive line of a solution or hidden region must be absent from the release,
    # unless the source also shows it outside such regions (in prose or a hint, say).
    secret, public = set(), []
    for cell in source.cells:
        text = cell.source
        regions = _regions(text, "### BEGIN SOLUTION", "END SOLUTION") + _regions(text, "### BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        for region in regions:
            secret.update(line.strip() for line in region.splitlines() if len(line.strip()) >= 12)
            text = text.replace(region, "")
        public.append(text)
    public_text = "\n".join(public)
    leaked = sorted(line for line in secret if line in release_text and line not in public_text)
    assert not leaked, f"release/{aid} contains solution or hidden-test lines: {leaked[:5]}"


@pytest.mark.parametrize("aid", assignments())
def test_source_is_consistent(course, aid):
    check_source(course, aid)  # twin in sync, points match course_config.py, solution regions present
    cells = read_notebook(course.source_notebook(aid)).cells
    assert cells[0].cell_type == "markdown" and "By the end of this notebook" in cells[0].source
    assert "**Time:** about" in cells[0].source, "no expected time under the title: run scripts/expected-time"
    assert any("<details><summary>Hint" in c.source for c in cells if role(c) == "prose")


def test_build_of_unknown_assignment_writes_nothing(course_copy):
    before = tree(course_copy)
    result = run(["course", "build", "99_nope"], cwd=course_copy)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "unknown assignment '99_nope'" in result.stderr
    assert tree(course_copy) == before


def test_readme_course_table_matches_the_course(course):
    """The README's table of assignments states points, graded cells and catalogue sizes: they
    must be the course's own (solution run times are measured, so they are not checked here)."""
    import yaml

    from torchcourse.assignment import Assignment

    readme = (ROOT / "README.md").read_text()
    for aid, points in course.assignments.items():
        row = re.search(rf"^\| {aid} \| [^|]+ \| (\d+) \| (\d+) \| (\d+) \|", readme, flags=re.M)
        assert row, f"README's course table has no row for {aid}"
        cells = len(Assignment.load(course, aid).tests)
        catalogue = len(yaml.safe_load((ROOT / "mistakes" / f"{aid}.yaml").read_text()))
        assert tuple(map(int, row.groups())) == (points, cells, catalogue), \
            f"README's row for {aid} says {row.groups()}; the course has {(points, cells, catalogue)}"
