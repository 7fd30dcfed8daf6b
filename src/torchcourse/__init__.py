"""The PyTorch course: its `course` command, build and grading pipeline, and `checks` helpers."""

__version__ = "0.1.0"


def private_builtins(namespace: dict) -> None:
    """Give a module its own snapshot of the builtins, so that a submission replacing one
    (builtins.isinstance = ...) cannot change how the grader's code behaves.

    Call it at the top of the module, before any def: functions capture their builtins when
    they are created."""
    import builtins

    namespace["__builtins__"] = dict(vars(builtins))
