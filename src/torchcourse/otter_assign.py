"""`course otter`: each source notebook -> an otter-grader assignment, written by `otter assign`.

One source of truth: the otter version is derived from source/<id>/<id>.ipynb every time,
never edited by hand. The conversion writes otter's "master notebook" format and hands it to
otter's own `otter assign`, which writes otter/<id>/student and otter/<id>/autograder:

    nbgrader source                         otter master notebook
    ---------------                         ---------------------
    prose, locked code, free cells     ->   the same cells (metadata kept)
    answer cells of one exercise       ->   a question named after the exercise's first test,
                                            each answer in a solution block (### BEGIN/END
                                            SOLUTION become otter's # BEGIN/END SOLUTION)
    each test cell (grade_id, points)  ->   one question of that name and points, all or
                                            nothing, with a public test case (the cell's
                                            visible code) and a hidden one (the whole cell,
                                            hidden tests included) where it has hidden tests

Test cases are otter's exception-based format. Each calls torchcourse.otter_grade.run_test,
which runs the cell's code the way the grader runs a test cell and fails with the grader's own
teaching message, so `grader.check("test-...")` says what `course check` says.

The autograder zip carries a bundle of the course (course_config.py, graders/, this
assignment's source and release, and the otter stubs of its answer cells) under files/course/,
and its otter_config.json names the plugin torchcourse.otter_grade.CourseGrader: every
submission, on Gradescope and under `otter run`, is graded by grade_notebook in the sandbox,
never by otter's plain kernel (see otter_grade.py and the README).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .config import Course, CourseError
from .notebooks import NotebookError, grade_id, points, read_notebook, role

PLUGIN = "torchcourse.otter_grade.CourseGrader"
BUNDLE = "course"                    # folder of the course bundle inside the zip's files/
STUBS = "otter_stubs.json"           # {answer grade_id: the otter student stub of that cell}
PYTHON_VERSION = "3.11"
PROJECT = Path(__file__).resolve().parents[2]   # this project: its pins and its wheel
HIDDEN_BEGIN = re.compile(r"^\s*### BEGIN HIDDEN TESTS\s*$")
HIDDEN_END = re.compile(r"^\s*### END HIDDEN TESTS\s*$")
# Packages the grader needs on Gradescope (pinned by constraints.txt), besides the project.
GRADER_PACKAGES = ["torch", "nbgrader", "nbformat", "jupytext", "psutil", "PyYAML", "rich",
                   "matplotlib", "scikit-learn", "torchvision"]


def split_test(source: str) -> tuple[str, str | None]:
    """A test cell's (visible code, whole code without the markers); the second is None when
    the cell has no hidden tests."""
    visible, whole, hidden, inside = [], [], False, False
    for line in source.split("\n"):
        if HIDDEN_BEGIN.match(line):
            inside = hidden = True
            continue
        if HIDDEN_END.match(line):
            inside = False
            continue
        whole.append(line)
        if not inside:
            visible.append(line)
    return "\n".join(visible), ("\n".join(whole) if hidden else None)


def _has_code(source: str) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in source.split("\n"))


def answer_source(source: str) -> str:
    """nbgrader's ### BEGIN/END SOLUTION markers as otter's # BEGIN/END SOLUTION."""
    out = []
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == "### BEGIN SOLUTION":
            line = line.replace("### BEGIN SOLUTION", "# BEGIN SOLUTION")
        elif stripped == "### END SOLUTION":
            line = line.replace("### END SOLUTION", "# END SOLUTION")
        out.append(line)
    return "\n".join(out)


def otter_stub(source: str) -> str:
    """What otter assign leaves of an answer cell in the student notebook (otter's own code)."""
    from otter.assign.solutions import replace_solutions

    return "\n".join(replace_solutions(answer_source(source).split("\n"), "python"))


def answer_names(source: NotebookNode) -> dict[str, str]:
    """Top-level functions and classes of the answer cells -> their cell, so that grader.check
    can name the cell an error comes from as the grader does."""
    import ast

    names: dict[str, str] = {}
    for cell in source.cells:
        if role(cell) != "answer":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[node.name] = grade_id(cell)
    return names


def _test_case(gid: str, code: str, hidden: bool, names: dict[str, str]) -> str:
    """One exception-based otter test case: the code rides in the function's docstring and
    run_test runs it as the grader runs a test cell."""
    func = "test_hidden" if hidden else "test_public"
    doc = json.dumps(code, ensure_ascii=False)  # a plain literal; ast.unparse makes it the docstring
    return (f'""" # BEGIN TEST CONFIG\nhidden: {str(hidden).lower()}\n""" # END TEST CONFIG\n'
            f"def {func}(env):\n    {doc}\n"
            f"    from torchcourse.otter_grade import run_test\n"
            f"    run_test(env, {json.dumps(gid)}, {func}, {json.dumps(names, sort_keys=True)})\n")


def _raw(text: str) -> NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def _question(gid: str, pts: float) -> NotebookNode:
    pts_text = int(pts) if float(pts).is_integer() else pts
    return _raw(f"# BEGIN QUESTION\nname: {gid}\npoints: {pts_text}\nall_or_nothing: true")


def assignment_config(aid: str) -> dict:
    return {
        "name": aid,
        "requirements": "requirements.txt",
        "overwrite_requirements": False,
        "python_version": PYTHON_VERSION,
        "run_tests": False,        # the test suite proves the zip on every assignment instead
        "init_cell": True,
        "check_all_cell": True,
        "export_cell": False,      # students submit the .ipynb itself
        "tests": {"files": True, "ok_format": False},
        "autograder_files": [BUNDLE],
        "generate": {
            "show_hidden": True,   # per-cell results (messages only, never test code) for students
            "pdf": False,
            "plugins": [{PLUGIN: {"assignment": aid, "bundle": BUNDLE, "profile": "cpu",
                                  "sandbox": "best-effort"}}],
        },
    }


def master_notebook(source: NotebookNode, aid: str) -> NotebookNode:
    """The otter master notebook of a source notebook (see the module docstring)."""
    import yaml

    cells = source.cells
    names = answer_names(source)
    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(source.metadata)
    nb.cells.append(_raw("# ASSIGNMENT CONFIG\n" + yaml.safe_dump(assignment_config(aid), sort_keys=False)))
    open_question = False
    for index, cell in enumerate(cells):
        r = role(cell)
        if r == "answer":
            if not open_question:
                nxt = next((c for c in cells[index + 1:] if role(c) == "test"), None)
                if nxt is None:
                    raise CourseError(f"{aid}: answer cell {grade_id(cell)} has no test cell after it")
                nb.cells.append(_question(grade_id(nxt), points(nxt)))
                open_question = True
            new = copy.deepcopy(cell)
            new.source = answer_source(cell.source)
            nb.cells.extend([_raw("# BEGIN SOLUTION"), new, _raw("# END SOLUTION")])
        elif r == "test":
            gid = grade_id(cell)
            if not open_question:
                nb.cells.append(_question(gid, points(cell)))
            visible, whole = split_test(cell.source)
            nb.cells.append(_raw("# BEGIN TESTS"))
            if whole is None or _has_code(visible):
                nb.cells.append(nbformat.v4.new_code_cell(_test_case(gid, visible, False, names)))
            if whole is not None:
                nb.cells.append(nbformat.v4.new_code_cell(_test_case(gid, whole, True, names)))
            nb.cells.extend([_raw("# END TESTS"), _raw("# END QUESTION")])
            open_question = False
        else:
            new = copy.deepcopy(cell)
            if new.cell_type == "code":
                new.outputs, new.execution_count = [], None
            nb.cells.append(new)
    if open_question:
        raise CourseError(f"{aid}: the last answer cells have no test cell after them")
    for i, c in enumerate(nb.cells):  # stable ids: a rerun writes the same notebooks
        if grade_id(c) is None or "id" not in c:
            c["id"] = f"otter-{i}"
    return nb


def grader_requirements(course: Course, wheel_name: str) -> str:
    """The zip's requirements.txt: the grader's own pins (constraints.txt) and this project."""
    pins: dict[str, str] = {}
    for name in ("requirements.txt", "constraints.txt"):
        path = PROJECT / name if (PROJECT / name).is_file() else course.path(name)
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
                if m:
                    pins[m.group(1).lower()] = f"{m.group(1)}=={m.group(2)}"
    lines = ["# Written by `course otter`: the grader's pinned dependencies and the course package.",
             "--extra-index-url https://download.pytorch.org/whl/cpu"]
    for pkg in GRADER_PACKAGES:
        lines.append(pins.get(pkg.lower(), pkg))
    lines.append(f"/autograder/source/files/{BUNDLE}/{wheel_name}")
    return "\n".join(lines) + "\n"


def build_wheel(course: Course, into: Path) -> Path:
    """A wheel of this project (the grader), for the zip to install on Gradescope."""
    src = PROJECT
    if not (src / "pyproject.toml").is_file():
        raise CourseError(f"cannot find the torchcourse project (pyproject.toml) at {src} to package the grader")
    with tempfile.TemporaryDirectory(prefix="wheel-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                               "--no-build-isolation", "-w", tmp, str(src)],
                              capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("torchcourse-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise CourseError("could not build the torchcourse wheel for the autograder zip: "
                              + (proc.stderr.strip().splitlines() or ["pip wheel failed"])[-1])
        into.mkdir(parents=True, exist_ok=True)
        out = into / wheels[0].name
        shutil.copy2(wheels[0], out)
        return out


def write_bundle(course: Course, aid: str, source: NotebookNode, into: Path, wheel: Path | None) -> None:
    """The course as the zip's grader needs it: config, profiles, this assignment's source and
    release (with its data files), the otter stubs of its answer cells, the grader's wheel."""
    into.mkdir(parents=True)
    shutil.copy2(course.path("course_config.py"), into / "course_config.py")
    shutil.copytree(course.path("graders"), into / "graders")
    (into / "source" / aid).mkdir(parents=True)
    shutil.copy2(course.source_notebook(aid), into / "source" / aid / f"{aid}.ipynb")
    release = course.path("release", aid)
    shutil.copytree(release, into / "release" / aid,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    stubs = {grade_id(c): otter_stub(c.source) for c in source.cells if role(c) == "answer"}
    (into / STUBS).write_text(json.dumps(stubs, indent=1, sort_keys=True) + "\n")
    if wheel is not None:
        shutil.copy2(wheel, into / wheel.name)


def stable_ids(path: Path, ours: set) -> None:
    """otter assign gives the cells it adds (its init and grader.check cells) random ids; give
    them ids made from their place, so that a rerun writes the same notebook."""
    nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    for index, cell in enumerate(nb.cells):
        if cell.get("id") not in ours:
            cell["id"] = f"otter-added-{index}"
    nbformat.write(nb, str(path))


def otter_bin() -> str:
    exe = Path(sys.executable).parent / "otter"
    return str(exe) if exe.exists() else "otter"


def convert(course: Course, aid: str, wheel: Path | None, verbose: bool = False) -> Path:
    """Write otter/<aid>/ (student/ and autograder/) with otter assign; return the zip."""
    from .build import check_source

    course.check_assignment(aid)
    check_source(course, aid)
    if not course.path("release", aid, f"{aid}.ipynb").is_file():
        raise CourseError(f"{aid} has no release at release/{aid}/{aid}.ipynb: run `course build {aid}` first")
    try:
        source = read_notebook(course.source_notebook(aid))
    except NotebookError as err:
        raise CourseError(str(err)) from None
    master = master_notebook(source, aid)
    out = course.path("otter", aid)
    with tempfile.TemporaryDirectory(prefix=f"otter-{aid}-") as tmp:
        work = Path(tmp)
        write_bundle(course, aid, source, work / BUNDLE, wheel)
        (work / "requirements.txt").write_text(grader_requirements(course, wheel.name if wheel else "torchcourse"))
        nbformat.write(master, str(work / f"{aid}.ipynb"))
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run([otter_bin(), "assign", "--no-pdfs", f"{aid}.ipynb", "dist"],
                              cwd=work, capture_output=True, text=True, env=env)
        if verbose:
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
        zips = sorted((work / "dist" / "autograder").glob("*.zip"))
        if proc.returncode != 0 or not zips:
            lines = [l for l in (proc.stderr + proc.stdout).strip().splitlines() if l.strip()]
            raise CourseError(f"otter assign could not convert {aid}: {lines[-1] if lines else 'no autograder zip'}")
        for nb_path in (work / "dist").glob("*/*.ipynb"):
            stable_ids(nb_path, {c.get("id") for c in master.cells})
        # a stable name beside otter's time-stamped one would be a second truth: keep otter's
        staged = course.path("otter", f".{aid}.new")
        shutil.rmtree(staged, ignore_errors=True)
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work / "dist", staged)
    shutil.rmtree(out, ignore_errors=True)
    staged.replace(out)
    return next(out.glob("autograder/*.zip"))


def otter_all(course: Course, ids: list[str], verbose: bool = False, on_step=None) -> list[Path]:
    for aid in ids:
        course.check_assignment(aid)
    with tempfile.TemporaryDirectory(prefix="torchcourse-wheel-") as tmp:
        wheel = build_wheel(course, Path(tmp))
        written = []
        for aid in ids:
            written.append(convert(course, aid, wheel, verbose))
            if on_step:
                on_step(aid)
    return written
