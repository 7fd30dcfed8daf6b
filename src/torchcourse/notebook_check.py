"""The check under every exercise: one line that prints what the exercise's tests say.

`course build` puts a *check cell* after the last test cell of every exercise, in release/ and
solutions/ (the nbgrader preprocessor `AddCheckCells`, in GenerateAssignment and
GenerateSolution, so stock `nbgrader generate_assignment` writes the same). Authors write
nothing. The cell holds one line:

    checks.check("test-grow-sanity", "test-grow", "test-grow-grad")

and its metadata names those tests, which of them had hidden tests in the source, and whether
the exercise is predict-then-verify (answers that are data, not code).

What the line does, in the student's kernel (`check` below):

- **A student's release** (no course around the notebook): it runs the *visible* part of each
  of those test cells, as the saved notebook holds it, on what the kernel holds now, with the
  grader's wording (`verdict`: the executor's messages, "not attempted" told apart from
  "wrong"), and prints one line per test the way `course check` does: ✓/✗/·, points, the
  message. A test with hidden parts shows `?` points: only grading decides them. For a
  predict-then-verify exercise it says the format is right and no more: a count of right
  predictions would let a student find the answer by flipping one value at a time.
- **A full clone** (the notebook lies inside a folder with course_config.py and source/, or
  under $COURSE_ROOT): it runs `course check --json` on the *saved* notebook in a subprocess,
  which grades it in the sandboxed grader with every test, hidden ones included, and prints
  that exercise's lines. Only the record crosses back (marks, points, messages): hidden test
  code is never loaded into the kernel's process. One grading per saved version of the file
  serves every check cell (a Run All costs one grading).
- **While a notebook is graded** it does nothing: the grader drops check cells before it runs
  anything (`assignment.restore`, which every front-end goes through), and a check line that
  reaches the grader some other way (a student's own cell) returns at once.

The check never changes a grade: grading never runs check cells, whatever they hold.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import hashlib
import html
import io
import json
import linecache
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from .notebooks import NotebookError, exercise_headings, grade_id, read_notebook, role

META = "torchcourse"   # the check cell's metadata key: {"check": [...], "hidden": [...], "predict": bool}
# How a test cell's outcome is marked wherever a list of them is shown.
MARKS = {"pass": "✓", "fail": "✗", "error": "✗", "not_attempted": "·", "not_run": "–", "flagged": "!",
         "pending": "?"}  # pending: only in a release's check, where hidden tests still decide
COLORS = {"pass": "32", "fail": "31", "error": "31", "flagged": "31"}   # ANSI; the rest yellow
STUB = re.compile(r"^\s*raise NotImplementedError\(", re.M)
COMMENT = "# Check this exercise: what its tests say (run it after your answer; grading ignores this cell)"


# --- the convention: which cells are check cells, and where the build puts them -------------

def is_check_cell(cell) -> bool:
    """A check cell: no nbgrader grade id, and the course's check metadata. The grader drops
    these whatever their code says; a student who marks a cell of their own this way only
    keeps that cell out of grading."""
    meta = cell.get("metadata", {})
    mine = meta.get(META) if isinstance(meta, dict) else None
    return grade_id(cell) is None and isinstance(mine, dict) and "check" in mine


def exercise_groups(cells) -> list[dict]:
    """Each run of consecutive test cells, with the answer cells written since the run before:
    [{"tests": [...], "answers": [...], "last": index of the run's last cell}]."""
    groups: list[dict] = []
    answers: list[str] = []
    current: dict | None = None
    for index, cell in enumerate(cells):
        if is_check_cell(cell):
            continue
        r = role(cell)
        if r == "test":
            if current is None:
                current = {"tests": [], "answers": answers, "last": index}
                groups.append(current)
                answers = []
            current["tests"].append(grade_id(cell))
            current["last"] = index
            continue
        current = None
        if r == "answer":
            answers.append(grade_id(cell))
    return groups


def _only_data(source: str) -> bool:
    """An answer cell that binds values only (a dict of predictions, numbers), no code."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    code = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Lambda)
    return bool(tree.body) and not any(isinstance(n, code) for n in ast.walk(tree))


def check_cell_source(tests: list[str]) -> str:
    return f"{COMMENT}\nchecks.check({', '.join(json.dumps(t) for t in tests)})"


def with_check_cells(cells: list) -> list:
    """The cells with one check cell after every exercise's tests (any check cells already
    there are replaced, so that building twice gives the same notebook). Run it on the source
    (before hidden tests are cleared): it records which tests have hidden parts."""
    import nbformat

    cells = [c for c in cells if not is_check_cell(c)]
    by_id = {grade_id(c): c for c in cells if grade_id(c)}
    after: dict[int, Any] = {}
    used = {c.get("id") for c in cells}
    for group in exercise_groups(cells):
        tests = group["tests"]
        hidden = [t for t in tests if "BEGIN HIDDEN TESTS" in by_id[t].source]
        answers = [by_id[a].source for a in group["answers"]]
        predict = bool(answers) and all(_only_data(s) for s in answers)
        cell_id = ("check-" + tests[-1])[:64]
        while cell_id in used:
            cell_id = cell_id[:60] + f"-{len(used) % 1000:03d}"
        used.add(cell_id)
        after[group["last"]] = nbformat.v4.new_code_cell(
            check_cell_source(tests), id=cell_id,
            metadata={"deletable": False, "editable": False,
                      META: {"check": tests, "hidden": hidden, "predict": predict}})
    out = []
    for index, cell in enumerate(cells):
        out.append(cell)
        if index in after:
            out.append(after[index])
    return out


# --- running a test cell's code in the student's kernel, with the grader's words ------------

_TEST_FILE = "<test {}>"


def _student_frame(tb) -> tuple[int, str] | None:
    """The innermost traceback entry in a notebook cell (IPython's cell files): (line, function)."""
    found = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if "ipykernel_" in name or name.startswith("<ipython-input") or name.startswith("<cell"):
            found = (tb.tb_lineno, tb.tb_frame.f_code.co_qualname)
        tb = tb.tb_next
    return found


def _innermost(tb):
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last


def verdict(code: str, label: str, env: dict, cells: dict[str, str] | None = None) -> tuple[str, str]:
    """Run a test cell's code against the notebook's globals as the grader's executor does
    (a copy of the globals with the real builtins, asserts on) and return (status, message)
    with the executor's wording. `cells` maps the answers' functions and classes to their
    cells, to name them as the grader does."""
    from .checks.explain import explain

    g = {k: v for k, v in env.items() if not (hasattr(builtins, k) and k not in ("_",))}
    g["__builtins__"] = builtins
    try:
        compiled = compile(code, _TEST_FILE.format(label), "exec", dont_inherit=True, optimize=0)
        exec(compiled, g)  # noqa: S102 - the course's own test code, in the student's kernel
    except AssertionError as err:
        text = str(err).strip() or "A check in this test failed (it gives no message)."
        return "fail", text if len(text) <= 1500 else text[:1500] + " [...]"
    except Exception as err:  # noqa: BLE001
        where = _student_frame(err.__traceback__)
        last = _innermost(err.__traceback__)
        line = ""
        if last is not None:
            line = linecache.getline(last.tb_frame.f_code.co_filename, last.tb_lineno)
        if isinstance(err, NotImplementedError) and where and "raise" in line and "NotImplementedError" in line:
            name = f"`{where[1]}`" if where[1] != "<module>" else "an answer cell"
            return "not_attempted", (f"Not attempted: {name} still raises NotImplementedError. Replace "
                                     "the stub in the cell marked YOUR CODE HERE with your answer.")
        head = f"{type(err).__name__}: {str(err)[:600]}".rstrip(": ")
        in_test = last is not None and last.tb_frame.f_code.co_filename == _TEST_FILE.format(label)
        if where and not in_test:
            inside = f"in `{where[1]}` " if where[1] != "<module>" else ""
            cell = (cells or {}).get(where[1].split(".")[0])
            text = f"Your code raised {head} ({inside}at line {where[0]} of " + (
                f"cell {cell})." if cell else "your cell).")
        else:
            text = f"The test could not use your result: {head}."
        concept = explain(err)
        if concept:
            text += " " + concept
        return "error", text
    finally:
        for key, value in g.items():  # names a test defines stay visible, as in the grader
            if key != "__builtins__" and not hasattr(builtins, key):
                env[key] = value
    return "pass", ""


# --- the lines `course check` prints, shared with the notebook's check ---------------------

def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"


def cell_lines(cells: dict[str, Any], exercises: dict[str, str], columns: int = 100) -> list[tuple[str, str, Any]]:
    """One entry per graded cell: (the line `course check` prints, its wrapped message lines,
    the cell). A cell has .status, .points (None: not known yet), .max_points and .message."""
    width = max((len(g) for g in cells), default=10)
    indent = width + 15
    out = []
    for gid, cell in cells.items():
        mark = MARKS.get(cell.status, "?")
        line = f"  {mark} {gid:<{width}}  {_fmt(cell.points):>3}/{_fmt(cell.max_points):<3}"
        text = cell.message
        if cell.status not in ("pass", "pending") and exercises.get(gid):
            text += f" (Hints: under “{exercises[gid]}”.)"
        wrapped = textwrap.wrap(text, width=max(40, columns - indent)) if text else []
        out.append((line, wrapped, cell))
    return out


def format_lines(cells: dict[str, Any], exercises: dict[str, str], columns: int = 100) -> list[str]:
    lines = []
    for line, wrapped, cell in cell_lines(cells, exercises, columns):
        if wrapped:
            lines.append(line + "  " + wrapped[0])
            lines.extend(" " * (len(line) + 2) + rest for rest in wrapped[1:])
        else:
            lines.append(line)
    return lines


# --- the check itself, in the student's kernel ----------------------------------------------

class _Cell:
    def __init__(self, status: str, points: float | None, max_points: float, message: str) -> None:
        self.status, self.points, self.max_points, self.message = status, points, max_points, message


HIDDEN_NOTE = "The visible checks pass; hidden tests decide these points when your notebook is graded."
PREDICT_NOTE = ("The format is right (what the visible test checks). Whether each prediction is right "
                "is decided only when your notebook is graded: any hint here would let you find the "
                "answers by trying values.")
HIDDEN_ONLY = "A hidden test: it decides these points when your notebook is graded."
_cache: dict[str, dict] = {}   # sha256 of a saved notebook -> the grader's JSON for it


def _grading() -> bool:
    """Inside the grader, cells print into the executor's capture stream."""
    return type(sys.stdout).__module__ == "torchcourse.childio"


def _find_notebook(ns: dict, tests: tuple[str, ...], explicit) -> Path | None:
    if explicit:
        return Path(explicit)
    for candidate in (ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    # no session name (nbgrader validate, nbclient): a notebook in the working folder with these tests
    for path in sorted(Path.cwd().glob("*.ipynb"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            ids = {grade_id(c) for c in read_notebook(path).cells}
        except (NotebookError, OSError):
            continue
        if set(tests) <= ids:
            return path
    return None


def course_root(notebook: Path) -> Path | None:
    """The clone of the whole course this notebook lies in ($COURSE_ROOT first), if any."""
    env = os.environ.get("COURSE_ROOT")
    for folder in ([Path(env)] if env else []) + list(notebook.resolve().parents):
        if (folder / "course_config.py").is_file() and (folder / "source").is_dir():
            return folder
    return None


def _has_code(source: str) -> bool:
    try:
        return bool(ast.parse(source).body)
    except SyntaxError:
        return True


def _answer_names(nb) -> dict[str, str]:
    names: dict[str, str] = {}
    for cell in nb.cells:
        if role(cell) == "answer":
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names[node.name] = grade_id(cell)
    return names


def _visible(nb, tests: tuple[str, ...], info: dict, ns: dict) -> tuple[dict[str, _Cell], list[str]]:
    """Run the visible part of each test cell (as saved) on the kernel's state."""
    by_id = {grade_id(c): c for c in nb.cells if grade_id(c)}
    group = next((g for g in exercise_groups(nb.cells) if set(tests) & set(g["tests"])), None)
    stubbed = [a for a in (group or {}).get("answers", []) if a in by_id and STUB.search(by_id[a].source)]
    names = _answer_names(nb)
    results: dict[str, _Cell] = {}
    notes: list[str] = []
    for gid in tests:
        cell = by_id.get(gid)
        if cell is None or role(cell) != "test":
            results[gid] = _Cell("not_run", 0, 0, "This test cell is not in the saved notebook.")
            continue
        max_points = float(cell.metadata.nbgrader.get("points", 0) or 0)
        with contextlib.redirect_stdout(io.StringIO()):  # what a test prints is not the check's verdict
            status, message = verdict(cell.source, gid, ns, names)
        if status != "pass":
            results[gid] = _Cell(status, 0, max_points, message)
        elif gid in info.get("hidden", []):
            note = PREDICT_NOTE if info.get("predict") else HIDDEN_NOTE if _has_code(cell.source) else HIDDEN_ONLY
            results[gid] = _Cell("pending", None, max_points, note)
        else:
            results[gid] = _Cell("pass", max_points, max_points, "")
    if stubbed and all(c.status in ("pass", "pending") for c in results.values()):
        cells = ", ".join(stubbed)
        notes.append(f"The saved file still has the stub (the line raising NotImplementedError) in {cells}, so "
                     "graded now this exercise would count as not attempted: save the notebook (Ctrl+S) once "
                     "that cell holds your answer.")
    return results, notes


def _graded(root: Path, notebook: Path) -> dict:
    """The grader's record of the saved notebook (`course check --json`, in a subprocess)."""
    data = notebook.read_bytes()
    key = hashlib.sha256(str(root).encode() + b"\0" + data).hexdigest()
    if key in _cache:
        return _cache[key]
    env = dict(os.environ, COURSE_ROOT=str(root), NO_COLOR="1")
    # -I: the kernel's PYTHONPATH and friends do not reach the grader
    done = subprocess.run([sys.executable, "-I", "-m", "torchcourse.cli", "check", str(notebook), "--json"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1):
        raise RuntimeError((done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")[-600:])
    result = json.loads(done.stdout)
    _cache[key] = result
    return result


def _unsaved(ip, nb) -> bool:
    """Did the kernel just run code the saved notebook does not hold (an edit not saved yet)?"""
    try:
        history = [h for h in ip.history_manager.input_hist_raw if h.strip()]
    except AttributeError:
        return False
    saved = {c.source.strip() for c in nb.cells if c.cell_type == "code"}
    before = [h for h in history[:-1] if "checks.check(" not in h]  # the last input is this check
    return bool(before) and before[-1].strip() not in saved


def _show(title: str, cells: dict[str, _Cell], exercises: dict[str, str], notes: list[str]) -> None:
    lines = [title, *format_lines(cells, exercises), *notes]
    plain = "\n".join(lines)
    rows = []
    for line, wrapped, cell in cell_lines(cells, exercises):
        color = {"32": "#1a7f37", "31": "#cf222e"}.get(COLORS.get(cell.status, ""), "#9a6700")
        mark, rest = line.strip().split(" ", 1)
        gid, points = rest.rsplit("  ", 1) if "  " in rest else (rest, "")
        td = "padding:2px 6px;text-align:left;vertical-align:top"
        rows.append(f'<tr><td style="{td};color:{color};font-weight:bold">{html.escape(mark)}</td>'
                    f'<td style="{td};white-space:nowrap"><code>{html.escape(gid.strip())}</code></td>'
                    f'<td style="{td};white-space:nowrap">{html.escape(points.strip())}</td>'
                    f'<td style="{td}">{html.escape(" ".join(wrapped))}</td></tr>')
    page = (f'<div class="course-check"><div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>'
            f'<table style="border-collapse:collapse">{"".join(rows)}</table>'
            + "".join(f'<div style="margin-top:4px">{html.escape(n)}</div>' for n in notes) + "</div>")
    try:
        from IPython.display import display
        display({"text/plain": plain, "text/html": page}, raw=True)
    except ImportError:
        print(plain)


def check(*tests: str, notebook: str | os.PathLike | None = None) -> None:
    """Print what this exercise's tests say: the visible ones here, all of them (hidden ones
    included, in the grader) where the whole course is present. Never raises for a failed test."""
    if _grading():
        return  # grading never runs check cells; one that slipped in as a student's cell does nothing
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is None:
        print("checks.check runs in a notebook (a Jupyter kernel); outside one, use `course check NOTEBOOK`.")
        return
    ns = ip.user_ns
    path = _find_notebook(ns, tests, notebook)
    if path is None:
        print("checks.check could not find this notebook's file (save it first, or pass "
              "notebook='name.ipynb').")
        return
    try:
        nb = read_notebook(path)
    except NotebookError as err:
        print(f"checks.check could not read the notebook: {err}")
        return
    info = next((c.metadata[META] for c in nb.cells if is_check_cell(c)
                 and list(c.metadata[META].get("check", [])) == list(tests)), {})
    exercises = exercise_headings(nb.cells)
    heading = exercises.get(tests[0], "this exercise") if tests else "this exercise"
    root = course_root(path)
    if root is not None:
        saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
        print(f"Checking {heading} in the course's grader (all tests, hidden ones included) "
              f"on {path.name} as saved at {saved}…", flush=True)
        try:
            result = _graded(root, path)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as err:
            print(f"The grader could not check it ({err}); falling back to the visible tests.")
        else:
            record = result["record"]
            cells = {g: _Cell(c["status"], c["points"], c["max_points"], c["message"])
                     for g, c in record["cells"].items() if g in tests}
            notes = []
            if record["status"] != "graded":
                notes.append(f"The notebook's grading stopped: {record['status']}"
                             + (f" ({record['reason']})" if record.get("reason") else "") + ".")
            notes.extend(f"flag: {f}" for f in record.get("flags", []))
            score = sum(c.points for c in cells.values())
            total = sum(c.max_points for c in cells.values())
            if score < total:
                notes.append(f"Stuck? Open the hints under “{heading}”, one at a time. "
                             f"The solution is in {result.get('solution', 'solutions/')}.")
            if _unsaved(ip, nb):
                notes.append("Your kernel just ran code that the saved notebook does not hold: save the "
                             "notebook (Ctrl+S) and run this check again.")
            _show(f"{heading}: {_fmt(score)}/{_fmt(total)} (every test, hidden ones included, in the grader)", cells, result.get("exercises", exercises), notes)
            return
    cells, notes = _visible(nb, tests, info, ns)
    title = f"{heading}: the visible tests, on what this kernel holds now"
    if info.get("hidden") or not info:
        title += " (hidden tests run when your notebook is graded, or with `course check` in a clone of the course)"
    if all(c.status == "pass" for c in cells.values()) and cells:
        title = f"{heading}: {_fmt(sum(c.points for c in cells.values()))}/{_fmt(sum(c.max_points for c in cells.values()))}"
    _show(title, cells, exercises, notes)
