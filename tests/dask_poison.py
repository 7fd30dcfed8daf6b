"""A Dask worker preload (dask worker --preload tests/dask_poison.py) for tests/test_cluster.py:
the worker process dies, as a grader escaping its sandbox or a node failing would, whenever it
starts grading the student named in TORCHCOURSE_TEST_POISON. Never used outside the tests."""
import os

from torchcourse import grading

# Dask imports a preload module in the nanny and again in the worker: patch once, keep the original
_grade_notebook = getattr(grading, "_unpoisoned", grading.grade_notebook)
grading._unpoisoned = _grade_notebook


def _poisoned(assignment, raw, student, profile, **kwargs):
    if student == os.environ.get("TORCHCOURSE_TEST_POISON"):
        os._exit(1)
    return _grade_notebook(assignment, raw, student, profile, **kwargs)


grading.grade_notebook = _poisoned
