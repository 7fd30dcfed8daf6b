"""A Dask worker preload (dask worker --preload tests/dask_faults.py) for tests/test_cluster.py,
never used outside the tests. Two faults, each switched on by a variable in the worker's
environment:
- TORCHCOURSE_TEST_POISON=STUDENT: the worker process dies, as a grader escaping its sandbox or
  a failing node would, whenever it starts grading that student;
- TORCHCOURSE_TEST_STALE=1: the worker reports different grader code, as one running another
  version of the project would."""
import os

from torchcourse import cluster, grading

# Dask imports a preload module in the nanny and again in the worker: patch once, keep the original
_grade_notebook = getattr(grading, "_unpatched", grading.grade_notebook)
grading._unpatched = _grade_notebook


def _poisoned(assignment, raw, student, profile, **kwargs):
    if student == os.environ.get("TORCHCOURSE_TEST_POISON"):
        os._exit(1)
    return _grade_notebook(assignment, raw, student, profile, **kwargs)


grading.grade_notebook = _poisoned

if os.environ.get("TORCHCOURSE_TEST_STALE"):
    cluster.code_digest = lambda: "0" * 64
