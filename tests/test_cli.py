"""The `course` command as an instructor and a self-learner use it: a batch with good and bad
submissions, exports, feedback, and one clear line (and nothing written) for bad input."""
from __future__ import annotations

import json

import nbformat
import pytest

from conftest import ROOT, run, tree

AID = "01_introduction"
SUBCOMMANDS = ["build", "twin", "grade", "check", "mistakes", "feedback", "export", "report", "demo"]


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(sub, tmp_path):
    result = run(["course", *([sub] if sub else []), "--help"], cwd=tmp_path)
    assert result.returncode == 0 and "usage: course" in result.stdout


def _submit(root, student, nb=None, text=None, aid=AID):
    path = root / "submitted" / student / aid / f"{aid}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is not None:
        path.write_text(text)
    else:
        nbformat.write(nb, str(path))
    return path


def _solution():
    return nbformat.read(str(ROOT / "solutions" / AID / f"{AID}.ipynb"), 4)


NOISY_CELL = """\
import sys, warnings
warnings.warn("this API is deprecated")
print("epoch 1/1: 100%|##########|", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """A class of five graded in one batch, with a private gradebook."""
    from conftest import copy_course
    root = copy_course(tmp_path_factory.mktemp("class") / "course")
    env = {"COURSE_DB_URL": f"sqlite:///{root}/gradebook.db"}
    assert run(["course", "build", AID], cwd=root, env=env).returncode == 0
    _submit(root, "good", _solution())
    _submit(root, "blank", nbformat.read(str(ROOT / "release" / AID / f"{AID}.ipynb"), 4))
    _submit(root, "corrupt", text='{"cells": [')
    stranger = nbformat.v4.new_notebook()
    stranger.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "q1", "solution": True}})]
    _submit(root, "stranger", stranger)
    noisy = _solution()
    noisy.cells.insert(3, nbformat.v4.new_code_cell(NOISY_CELL))
    _submit(root, "noisy", noisy)
    result = run(["course", "grade", AID, "--workers", "2"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    exported = run(["course", "export", AID, "--format", "json"], cwd=root, env=env)
    assert exported.returncode == 0, exported.stderr
    return root, env, {row["student"]: row for row in json.loads(exported.stdout)}


def test_batch_gives_each_submission_its_outcome(graded_class):
    _, _, rows = graded_class
    assert rows["good"]["score"] == rows["good"]["max_score"] == 22 and rows["good"]["status"] == "graded"
    assert rows["blank"]["score"] == 0 and rows["blank"]["status"] == "graded"
    assert set(rows["blank"]["cell_status"].values()) == {"not_attempted"}
    assert rows["corrupt"]["status"] == "invalid" and "not valid JSON" in rows["corrupt"]["reason"]
    assert rows["stranger"]["status"] == "invalid" and "none of the answer or test cells" in rows["stranger"]["reason"]


def test_stderr_does_not_cost_points(graded_class):
    _, _, rows = graded_class
    assert rows["noisy"]["score"] == 22, rows["noisy"]["messages"]


def test_json_export_has_a_field_per_graded_cell(graded_class):
    _, _, rows = graded_class
    row = rows["good"]
    for key in ("student", "assignment", "score", "max_score", "status", "cells"):
        assert key in row
    assert len(row["cells"]) == 12 and all(isinstance(v, (int, float)) for v in row["cells"].values())


def test_csv_export_has_a_column_per_graded_cell(graded_class, tmp_path):
    root, env, _ = graded_class
    out = tmp_path / "grades.csv"
    assert run(["course", "export", "--format", "csv", "--output", str(out)], cwd=root, env=env).returncode == 0
    header, *lines = out.read_text().splitlines()
    assert header.split(",")[:6] == ["student", "assignment", "score", "max_score", "status", "reason"]
    assert "test-grow" in header.split(",") and len(lines) == 5


def _tests_in_notebook_order():
    return [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(ROOT / "source" / AID / f"{AID}.ipynb"), 4).cells
            if c.metadata.get("nbgrader", {}).get("grade")]


def test_exports_and_feedback_list_tests_in_notebook_order(graded_class, tmp_path):
    root, env, rows = graded_class
    order = _tests_in_notebook_order()
    assert list(rows["good"]["cells"]) == order
    out = tmp_path / "grades.csv"
    assert run(["course", "export", AID, "--format", "csv", "--output", str(out)], cwd=root, env=env).returncode == 0
    assert out.read_text().splitlines()[0].split(",")[6:] == order
    assert run(["course", "feedback", AID], cwd=root, env=env).returncode == 0
    page = (root / "feedback" / "good" / AID / f"{AID}.html").read_text()
    assert [page.index(f">{gid}<") for gid in order] == sorted(page.index(f">{gid}<") for gid in order)


def test_feedback_pages_show_messages_not_hidden_tests(graded_class):
    root, env, rows = graded_class
    assert run(["course", "feedback", AID], cwd=root, env=env).returncode == 0
    source = nbformat.read(str(ROOT / "source" / AID / f"{AID}.ipynb"), 4)
    hidden = [line.strip() for c in source.cells for line in
              c.source.split("### BEGIN HIDDEN TESTS")[-1].split("### END HIDDEN TESTS")[0].splitlines()
              if "### BEGIN HIDDEN TESTS" in c.source and len(line.strip()) > 15]
    for student in ("good", "blank", "corrupt", "noisy"):
        page = (root / "feedback" / student / AID / f"{AID}.html").read_text()
        assert "HIDDEN TESTS" not in page
        leaked = [line for line in hidden if line in page]
        assert not leaked, leaked[:3]
    blank = (root / "feedback" / "blank" / AID / f"{AID}.html").read_text()
    assert "Not attempted" in blank
    corrupt = (root / "feedback" / "corrupt" / AID / f"{AID}.html").read_text()
    assert "invalid" in corrupt and "not valid JSON" in corrupt


def test_grade_a_zip_of_submissions(course_copy, tmp_path):
    import zipfile
    env = {"COURSE_DB_URL": f"sqlite:///{tmp_path}/gb.db"}
    assert run(["course", "build", AID], cwd=course_copy, env=env).returncode == 0
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ROOT / "solutions" / AID / f"{AID}.ipynb", f"submitted/amy/{AID}/{AID}.ipynb")
        zf.write(ROOT / "release" / AID / f"{AID}.ipynb", f"submitted/bob/{AID}/{AID}.ipynb")
    result = run(["course", "grade", AID, "--submissions", str(archive)], cwd=course_copy, env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["student"]: r for r in json.loads(run(["course", "export", AID, "--format", "json"],
                                                     cwd=course_copy, env=env).stdout)}
    assert rows["amy"]["score"] == 22 and rows["bob"]["score"] == 0


def test_grade_refuses_a_zip_with_unsafe_paths(course_copy, tmp_path):
    import zipfile
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    before = tree(course_copy)
    _one_line_error(run(["course", "grade", AID, "--submissions", str(archive)], cwd=course_copy,
                        env={"COURSE_DB_URL": f"sqlite:///{tmp_path}/gb.db"}), "unsafe path")
    assert tree(course_copy) == before and not (tmp_path.parent / "escaped.txt").exists()


# --- bad input: one clear line, a non-zero exit, nothing written ------------------------------

def _one_line_error(result, phrase):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and phrase in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_grade_unknown_assignment(course_copy):
    before = tree(course_copy)
    _one_line_error(run(["course", "grade", "99_nope"], cwd=course_copy), "unknown assignment '99_nope'")
    assert tree(course_copy) == before


def test_grade_missing_submissions_folder(course_copy):
    before = tree(course_copy)
    result = run(["course", "grade", AID, "--submissions", str(course_copy / "nowhere")], cwd=course_copy)
    _one_line_error(result, "does not exist")
    assert tree(course_copy) == before


def test_check_notebook_that_is_not_json(course_copy):
    bad = course_copy / "broken.ipynb"
    bad.write_text("{ not json")
    before = tree(course_copy)
    _one_line_error(run(["course", "check", str(bad)], cwd=course_copy), "not valid JSON")
    assert tree(course_copy) == before


def test_check_notebook_of_another_assignment(course_copy):
    other = nbformat.v4.new_notebook()
    other.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "q1", "solution": True}})]
    path = course_copy / "other.ipynb"
    nbformat.write(other, str(path))
    result = run(["course", "check", str(path), "--assignment", AID], cwd=course_copy)
    assert result.returncode != 0
    assert "status: invalid" in result.stdout and "none of the answer or test cells" in result.stdout


def test_check_gives_exit_zero_only_for_full_marks(course_copy):
    good = run(["course", "check", str(ROOT / "solutions" / AID / f"{AID}.ipynb")], cwd=course_copy)
    assert good.returncode == 0 and good.stdout.rstrip().splitlines()[-1].startswith("score: 22 / 22"), good.stdout
    blank = run(["course", "check", str(ROOT / "release" / AID / f"{AID}.ipynb")], cwd=course_copy)
    assert blank.returncode == 1 and "score: 0 / 22" in blank.stdout
    assert "BEGIN HIDDEN" not in good.stdout + blank.stdout


def test_feedback_before_grading(course_copy):
    _one_line_error(run(["course", "feedback", AID], cwd=course_copy,
                        env={"COURSE_DB_URL": f"sqlite:///{course_copy}/gb.db"}), "nothing graded")


def test_outside_a_course(tmp_path):
    _one_line_error(run(["course", "build"], cwd=tmp_path), "course_config.py")


# --- stock nbgrader keeps working in the course root -------------------------------------------

@pytest.mark.slow
def test_stock_nbgrader_generate_and_autograde(course_copy):
    result = run(["nbgrader", "generate_assignment", AID, "--force"], cwd=course_copy)
    assert result.returncode == 0, result.stderr[-2000:]
    noisy = _solution()
    noisy.cells.insert(3, nbformat.v4.new_code_cell(NOISY_CELL))
    _submit(course_copy, "student1", noisy)
    result = run(["nbgrader", "autograde", AID], cwd=course_copy)
    assert result.returncode == 0, result.stderr[-3000:]
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course_copy}/gradebook.db") as gb:
        sub = gb.find_submission(AID, "student1")
        assert sub.score == sub.max_score == 22  # the stderr cell does not cost points


@pytest.mark.parametrize("cores, free_mb, memory_mb, threads, expected", [
    (2, 24_000, 3072, 1, 2),     # this machine: cores decide
    (16, 8_000, 3072, 1, 2),     # many cores, little memory: (8000 - 1024) // 3072 = 2
    (16, 2_000, 3072, 1, 1),     # not even one worker's worth: still one, never zero
    (16, 128_000, 8192, 2, 8),   # threads per worker divide the cores
])
def test_default_workers_never_exceed_cores_or_memory(monkeypatch, profile, cores, free_mb, memory_mb, threads, expected):
    import dataclasses
    import types

    from torchcourse import grading
    monkeypatch.setattr(grading.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(grading.psutil, "virtual_memory", lambda: types.SimpleNamespace(available=free_mb * 1e6))
    sized = dataclasses.replace(profile, workers=0, memory_mb=memory_mb, threads_per_worker=threads)
    assert grading.default_workers(sized) == expected
