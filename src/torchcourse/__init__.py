"""The PyTorch course: its `course` command, build and grading pipeline, and `checks` helpers."""

__version__ = "0.1.0"
