# The one configuration of this course.
#
# It is a traitlets config file: `course` reads it, and `nbgrader_config.py` loads it with
# `load_subconfig`, so stock `nbgrader` commands run in this folder see the same settings.
c = get_config()  # noqa: F821  (traitlets provides get_config when it loads this file)

# --- the course --------------------------------------------------------------------------
c.CourseDirectory.course_id = "pytorch-first-principles"
c.CourseDirectory.solution_directory = "solutions"  # nbgrader's default is "solution"

# Assignment id -> total points of its graded test cells. `course build` refuses to build an
# assignment whose notebook adds up to a different total, so this list is also a checksum.
c.Course.assignments = {
    "01_introduction": 22,
    "02_tensors": 45,
    "03_autograd": 48,
    "04_models": 37,
    "05_training": 45,
    "06_data": 32,
    "07_evaluation": 36,
    "08_serialization": 35,
    "10_sequences": 28,
}

# The grader profile used when `course grade` is not given --profile (see graders/).
c.Course.default_profile = "cpu"

# Where grades go: any SQLAlchemy URL. nbgrader's default is sqlite:///<course root>/gradebook.db
# c.CourseDirectory.db_url = "postgresql://grader@db.example.edu/pytorch"

# --- building (nbgrader generate_assignment / generate_solution) ---------------------------
# The stub students see in place of each solution. The message tells them what to do, and the
# grader reads a NotImplementedError as "not attempted" rather than "wrong".
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("Replace this line with your answer.")'
}
# Text twins of the source notebooks (jupytext percent format, for review) stay out of release/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.pct.py"]
# Solutions are written without executing them, so that a rebuild is byte-for-byte identical.
c.GenerateSolution.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ClearHiddenTests",
]

# --- stock `nbgrader autograde` (course grade uses its own executor; see README) ------------
c.Execute.timeout = 120  # seconds per cell
# Stock nbgrader zeroes a passing test cell that printed anything to stderr (a warning, a
# progress bar). This preprocessor, placed before SaveAutoGrades, drops stderr from test cells.
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "torchcourse.nbgrader_plugins.DropStderrFromTests",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Deleted test cells come back from the gradebook instead of silently scoring nothing.
c.OverwriteCells.add_missing_cells = True
