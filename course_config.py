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
    "02_tensors": 52,
    "03_autograd": 48,
    "04_models": 37,
    "05_training": 49,
    "06_data": 36,
    "07_evaluation": 36,
    "08_serialization": 37,
    "09_cnn": 30,
    "10_sequences": 28,
    "11_attention": 36,
    "12_transfer": 29,
    "13_generative": 35,
    "14_performance": 37,
    "15_deployment": 35,
    "16_debugging": 44,
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
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.pct.py", "grading.json"]
# Both versions get a check cell under every exercise (`checks.check(...)`: what its tests say,
# in the notebook; grading ignores these cells). AddCheckCells runs before hidden tests are
# cleared. The rest of GenerateAssignment's list is nbgrader 0.9's default.
c.GenerateAssignment.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "torchcourse.build.AddCheckCells",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Solutions are written without executing them, so that a rebuild is byte-for-byte identical.
c.GenerateSolution.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "torchcourse.build.AddCheckCells",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ClearHiddenTests",
]

# --- stock `nbgrader autograde` and `generate_feedback` (command line and formgrader) -------
# Both go through the course's grader, so that formgrader's buttons are as safe as `course`
# (see torchcourse/nbgrader_plugins.py and the README's section for instructors on a hub).
# Autograde: nbgrader reads every file (a broken one as an empty notebook), then
# SandboxedAutograde grades the submitted bytes in the sandboxed executor and stores the
# results exactly as `course grade` does. nbgrader's Execute is in neither list: no student code
# ever runs in nbgrader's process or in a Jupyter kernel.
c.Autograde.exporter_class = "torchcourse.nbgrader_plugins.TolerantNotebookExporter"
c.Autograde.sanitize_preprocessors = ["torchcourse.nbgrader_plugins.SandboxedAutograde"]
c.Autograde.autograde_preprocessors = [
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# The grader profile stock autograde uses (graders/<name>.toml); empty: c.Course.default_profile.
c.SandboxedAutograde.profile = ""
# Feedback: test cells show only what the release showed, plus the verdict and its message.
c.GenerateFeedback.preprocessors = [
    "torchcourse.nbgrader_plugins.FeedbackWithoutHiddenTests",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# Deleted test cells come back from the gradebook (only for courses that re-enable nbgrader's own
# sanitizing; the grader restores them from source/ whatever this says).
c.OverwriteCells.add_missing_cells = True
