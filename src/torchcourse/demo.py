"""`course demo`: build the course, grade a small made-up class, show the gradebook.

Everything the demo writes goes under demo/ (submissions, autograded/, feedback/, its own
gradebook), so it never mixes with a real class.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from .assignment import Assignment
from .config import Course
from .mistakes import apply, load_catalogue
from .notebooks import write_notebook

DEMO_ASSIGNMENT = "01_introduction"
# Catalogue entries to hand to demo students (by name), if the catalogue has them.
DEMO_MISTAKES = [
    ("cy", "pick_device hard-codes \"cuda\""),
    ("dee", "one leaf for all points, so gradients accumulate"),
    ("eve", "graph_depth follows only the first input"),
]
TAMPER_CELL = """\
# "Helpful" setup: make every comparison succeed.
import torch
from torchcourse import checks
torch.allclose = lambda *args, **kwargs: True
checks.expect = lambda *args, **kwargs: None
"""


def make_class(course: Course, assignment: Assignment, folder: Path) -> dict[str, str]:
    """Write the demo submissions; return student -> what they handed in."""
    import nbformat

    if folder.exists():
        shutil.rmtree(folder)
    aid = assignment.id
    students: dict[str, str] = {}

    def put(student: str, nb, what: str) -> None:
        write_notebook(nb, folder / student / aid / f"{aid}.ipynb")
        students[student] = what

    from .notebooks import read_notebook

    solution = read_notebook(course.path("solutions", aid, f"{aid}.ipynb"))
    put("ada", copy.deepcopy(solution), "the full solution")
    put("bea", copy.deepcopy(assignment.release), "the untouched release")
    catalogue = {m.name: m for m in load_catalogue(course, assignment)}
    for student, name in DEMO_MISTAKES:
        if name in catalogue:
            put(student, apply(assignment, catalogue[name]), f"mistake: {name}")
    tampered = copy.deepcopy(solution)
    tampered.cells.insert(2, nbformat.v4.new_code_cell(TAMPER_CELL))
    put("mallory", tampered, "the solution, plus a cell that patches torch and checks")
    bad = folder / "zed" / aid / f"{aid}.ipynb"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text('{"cells": [ {"cell_type": "code", "source": "print(1)"')  # cut off mid-file
    students["zed"] = "a notebook cut off mid-file (not valid JSON)"
    return students


def demo_root(course: Course) -> Path:
    return course.path("demo")


def use_demo_gradebook(course: Course) -> None:
    """Point this process at the demo's own gradebook (unless COURSE_DB_URL says otherwise)."""
    os.environ.setdefault("COURSE_DB_URL", f"sqlite:///{demo_root(course) / 'gradebook.db'}")
    demo_root(course).mkdir(exist_ok=True)
