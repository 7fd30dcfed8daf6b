"""An assignment as the grader sees it, and the repair of a submission against it.

The source notebook is the truth: test cells (with their hidden tests) and locked cells come
from it, answer cells from the student. `restore` rebuilds the notebook a submission should
have been, which goes further than nbgrader's OverwriteCells: test cells that were edited,
deleted, moved, duplicated or renamed are all put back exactly as the source has them, in the
source's order; cells the student added stay where they were (after the same cell); a deleted
answer cell comes back as its stub. Check cells (the line under each exercise that prints
what its tests say, notebook_check.py) are dropped: grading never runs them. Every repair is
recorded.
"""
from __future__ import annotations

import copy
import dataclasses
import nbformat
from nbformat import NotebookNode

from .config import Course, CourseError
from .notebook_check import is_check_cell
from .notebooks import NotebookError, exercise_headings, grade_id, points, read_notebook, role


def _bound(tree) -> set[str]:
    """Every name a cell binds anywhere (assignments, defs, imports, arguments, loops)."""
    import ast
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.alias):
            names.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
    return names


class InvalidSubmission(Exception):
    """The submission cannot be graded as this assignment; the message says why."""


@dataclasses.dataclass
class Assignment:
    id: str
    source: NotebookNode                 # solutions and hidden tests
    release: NotebookNode                # what students got
    files: dict[str, bytes]              # data files shipped beside the notebook
    other_ids: dict[str, set[str]]       # grade ids of the course's other assignments

    def __post_init__(self) -> None:
        self.by_id = {grade_id(c): c for c in self.source.cells if grade_id(c)}
        self.release_by_id = {grade_id(c): c for c in self.release.cells if grade_id(c)}
        self.tests = [grade_id(c) for c in self.source.cells if role(c) == "test"]
        self.answers = [grade_id(c) for c in self.source.cells if role(c) == "answer"]
        self.max_points = {gid: points(self.by_id[gid]) for gid in self.tests}
        self.exercise: dict[str, str] = exercise_headings(self.source.cells)
        self.total = sum(self.max_points.values())
        self.imports = self._imports()
        self.setup_cells, self.judged_outside = self._outside()
        # Which answer cells each test depends on: those since the previous group of tests.
        self.answers_for: dict[str, list[str]] = {}
        group: list[str] = []
        last_was_test = False
        for cell in self.source.cells:
            r = role(cell)
            if r == "answer":
                if last_was_test:
                    group = []
                group.append(grade_id(cell))
                last_was_test = False
            elif r == "test":
                self.answers_for[grade_id(cell)] = list(group)
                last_was_test = True
        self.upstream = self._upstream()

    def _upstream(self) -> dict[str, list[tuple[str, str]]]:
        """For each test, the earlier tests of the answers its own answers build on, as
        (test id, names): `train_digits` calls `fit`, which calls `train_epoch`, which calls
        `train_step`, so test-digits has the tests of those three exercises upstream. Read from
        the solution: the top-level names each answer cell defines, and the names it uses."""
        import ast

        defines: dict[str, set[str]] = {}
        uses: dict[str, set[str]] = {}
        for gid in self.answers:
            try:
                tree = ast.parse(self.by_id[gid].source)
            except SyntaxError:
                continue
            defines[gid] = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            uses[gid] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        owner = {}
        for gid in self.answers:  # the first cell to define a name owns it
            for name in defines.get(gid, ()):
                owner.setdefault(name, gid)
        direct = {gid: {owner[n] for n in uses.get(gid, ()) if n in owner and owner[n] != gid}
                  for gid in self.answers}
        out: dict[str, list[tuple[str, str]]] = {}
        for test in self.tests:
            own = set(self.answers_for.get(test, []))
            seen, todo = set(), [d for gid in own for d in direct.get(gid, ())]
            while todo:
                gid = todo.pop()
                if gid not in seen and gid not in own:
                    seen.add(gid)
                    todo.extend(direct.get(gid, ()))
            earlier = self.tests[:self.tests.index(test)]
            out[test] = [(t, ", ".join(f"`{n}`" for n in sorted(defines[gid])))
                         for t in earlier for gid in self.answers_for.get(t, []) if gid in seen]
        return out

    def _imports(self) -> list[str]:
        """Modules the source notebook imports (from any cell that parses as Python): the fork
        server imports them once per batch instead of every submission importing them.
        Computed once, at load: ast.parse is not thread-safe in CPython 3.11 (concurrent calls
        can raise "SystemError: AST constructor recursion depth mismatch")."""
        import ast
        import importlib.util

        names: set[str] = set()
        for cell in self.source.cells:
            if cell.cell_type != "code":
                continue
            if "meta" in cell.source:
                # meta-device code makes torch import its symbolic-shape machinery (and
                # torch._dynamo) on first use, about 2 s: once per batch, not per student
                names.update({"torch._dynamo", "torch.fx.experimental.symbolic_shapes"})
            if "torch.compile" in cell.source or "torch._dynamo" in cell.source:
                # the first compile (even torch._dynamo.explain) imports some 400 modules:
                # the backends, AOT autograd, Inductor's front end, export; about 3 s
                names.update({"torch._dynamo", "torch._dynamo.backends.registry", "torch._functorch.aot_autograd",
                              "torch._inductor.compile_fx", "torch.export"})
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
        found = []
        for name in sorted(names):
            try:
                if importlib.util.find_spec(name.split(".")[0]) is not None:
                    found.append(name)
            except (ImportError, ValueError):
                pass
        return found

    def _outside(self) -> tuple[list[NotebookNode], dict[str, list[str]]]:
        """Which tests the judge runs outside the student's process, and the names each needs.

        A test qualifies when it only reads *data* the student's answers define (predictions:
        dicts, numbers, tensors; never a function or class of theirs) plus what the locked
        cells above the first answer bind (imports, seeds), and when nothing after it reads a
        name it binds. Such a test never needs the student's code: the judge, a separate
        sandboxed process that never runs any, receives the values and runs the test on them.
        Returns the setup cells the judge runs first, and {test id: [student names]}."""
        import ast
        import builtins

        setup: list[NotebookNode] = []
        setup_names: set[str] = set()
        data_names: set[str] = set()
        code_names: set[str] = set()
        seen_answer = False
        parsed: list[tuple[NotebookNode, ast.Module | None]] = []
        for cell in self.source.cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                tree = None
            parsed.append((cell, tree))
            if tree is None:
                continue
            r = role(cell)
            if r == "answer":
                seen_answer = True
                for node in tree.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        code_names.add(node.name)
                    elif isinstance(node, (ast.Import, ast.ImportFrom)):
                        code_names.update((a.asname or a.name).split(".")[0] for a in node.names)
                    else:
                        data_names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
            elif r == "locked" and not seen_answer:
                setup.append(cell)
                setup_names.update(_bound(tree))
        data_names -= code_names | setup_names
        known = set(dir(builtins))
        outside: dict[str, list[str]] = {}
        for i, (cell, tree) in enumerate(parsed):
            if role(cell) != "test" or tree is None:
                continue
            bound = _bound(tree)
            free = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound - known
            wanted = free & data_names
            if not wanted or not free <= (setup_names | data_names):
                continue
            later = set()
            for other, other_tree in parsed[i + 1:]:
                if other_tree is not None and role(other) in ("test", "locked"):
                    later |= {n.id for n in ast.walk(other_tree) if isinstance(n, ast.Name)
                              and isinstance(n.ctx, ast.Load)} - _bound(other_tree)
            if later & (bound - setup_names):
                continue
            outside[grade_id(cell)] = sorted(wanted)
        return setup, outside

    def preload(self, profile_preload: list[str]) -> list[str]:
        """The fork server's preload for this assignment: the profile's and the notebook's."""
        return sorted(set(profile_preload) | set(self.imports))

    @classmethod
    def load(cls, course: Course, aid: str) -> "Assignment":
        course.check_assignment(aid)
        try:
            source = read_notebook(course.source_notebook(aid))
        except NotebookError as err:
            raise CourseError(str(err)) from None
        release_path = course.path("release", aid, f"{aid}.ipynb")
        if not release_path.is_file():
            raise CourseError(f"{aid} has no release at {release_path.relative_to(course.root)}: run `course build {aid}`")
        release = read_notebook(release_path)
        if {grade_id(c) for c in release.cells} - {None} != {grade_id(c) for c in source.cells} - {None}:
            raise CourseError(f"release/{aid} is out of date with source/{aid}: run `course build {aid}`")
        # The stubs come from the source, not from release/'s file: a self-learner who works in
        # release/ (and checks it there) has written answers into that very file, which would
        # make every answer look untouched ("not attempted" instead of the test's message).
        stubs = answer_stubs(course, source)
        for cell in release.cells:
            if role(cell) == "answer" and grade_id(cell) in stubs:
                cell.source = stubs[grade_id(cell)]
        files = {}
        folder = course.path("release", aid)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".ipynb" and ".ipynb_checkpoints" not in path.parts:
                files[str(path.relative_to(folder))] = path.read_bytes()
        others = {}
        for other in course.assignments:
            p = course.source_notebook(other)
            if other != aid and p.is_file():
                try:
                    others[other] = {grade_id(c) for c in read_notebook(p).cells if role(c) in ("answer", "test")}
                except NotebookError:
                    pass
        return cls(id=aid, source=source, release=release, files=files, other_ids=others)


def answer_stubs(course: Course, source: NotebookNode) -> dict[str, str]:
    """Each answer cell as `course build` releases it: the solution region replaced by the
    course's code stub (nbgrader's ClearSolutions, same rule, without importing nbgrader)."""
    import re

    stub = dict(course.config.get("ClearSolutions", {}).get("code_stub", {}) or {}).get(
        "python", "# YOUR CODE HERE\nraise NotImplementedError()")
    out = {}
    for cell in source.cells:
        if role(cell) != "answer" or "### BEGIN SOLUTION" not in cell.source:
            continue
        lines, inside = [], False
        for line in cell.source.split("\n"):
            if "### BEGIN SOLUTION" in line:
                inside = True
                indent = re.match(r"\s*", line).group(0)
                lines.extend(indent + s for s in stub.split("\n"))
            elif "### END SOLUTION" in line:
                inside = False
            elif not inside:
                lines.append(line)
        out[grade_id(cell)] = "\n".join(lines)
    return out


@dataclasses.dataclass
class Restored:
    notebook: NotebookNode
    repairs: list[str]


def _free_cell(cell: NotebookNode) -> NotebookNode:
    """A student-added cell: no nbgrader metadata (it is never graded), no outputs."""
    new = copy.deepcopy(cell)
    new.metadata = {k: v for k, v in new.get("metadata", {}).items() if k not in ("nbgrader", "deletable", "editable")}
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    return new


def restore(assignment: Assignment, submitted: NotebookNode) -> Restored:
    """The notebook to grade: the source's cells, the student's answers and added cells."""
    mine = {gid for gid in assignment.by_id}
    theirs = [grade_id(c) for c in submitted.cells if grade_id(c)]
    shared = set(theirs) & set(assignment.answers + assignment.tests)
    if not shared:
        for other, ids in assignment.other_ids.items():
            if set(theirs) & ids:
                raise InvalidSubmission(f"this is a notebook of assignment {other}, not {assignment.id}")
        raise InvalidSubmission(f"the notebook has none of the answer or test cells of {assignment.id} "
                                "(was it replaced by a different notebook?)")
    for other, ids in assignment.other_ids.items():
        if len(set(theirs) & ids) > len(shared):
            raise InvalidSubmission(f"this is a notebook of assignment {other}, not {assignment.id}")

    repairs: list[str] = []
    answers: dict[str, NotebookNode] = {}
    seen: set[str] = set()
    extras: dict[str | None, list[NotebookNode]] = {None: []}
    anchor: str | None = None
    order: list[str] = []
    released_checks = {c.source for c in assignment.release.cells if is_check_cell(c)}
    for cell in submitted.cells:
        if is_check_cell(cell):
            # The in-notebook check (notebook_check.py) never runs in grading, whatever it holds.
            note = ("a check cell was edited; check cells never run when a notebook is "
                    "graded, so its code did not count")
            if cell.get("source", "") not in released_checks and note not in repairs:
                repairs.append(note)
            continue
        gid = grade_id(cell)
        if gid in mine and gid not in seen:
            seen.add(gid)
            order.append(gid)
            anchor = gid
            extras.setdefault(gid, [])
            src_cell = assignment.by_id[gid]
            if role(src_cell) == "answer":
                if cell.cell_type != src_cell.cell_type:
                    repairs.append(f"answer cell {gid} was turned into a {cell.cell_type} cell; it was graded as its stub")
                else:
                    answers[gid] = cell
            else:
                # as released, or as in the source (hidden tests included): not an edit
                known = (assignment.release_by_id[gid].source, src_cell.source)
                if cell.get("source", "") not in known or cell.cell_type != src_cell.cell_type:
                    what = "test" if role(src_cell) == "test" else "locked"
                    repairs.append(f"{what} cell {gid} was edited; the original was restored")
            continue
        if gid in mine:
            repairs.append(f"cell {gid} appeared more than once; only the first counts as that cell")
        elif gid is not None:
            repairs.append(f"cell id {gid} is not part of {assignment.id} (a renamed cell?); it ran as an added cell")
        extras.setdefault(anchor, []).append(_free_cell(cell))

    missing_tests = [g for g in assignment.tests if g not in seen]
    if missing_tests:
        repairs.append(f"test cell(s) {', '.join(missing_tests)} were deleted; they were restored")
    expected_order = [gid for gid in assignment.by_id if gid in seen]
    if order != expected_order:
        repairs.append("cells were moved; the source's order was restored")

    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(assignment.source.metadata)
    nb.cells.extend(extras[None])
    for src_cell in assignment.source.cells:
        gid = grade_id(src_cell)
        if gid is None:
            continue  # a free cell of the source: the student's copy, if kept, is among the extras
        if role(src_cell) == "answer":
            if gid in answers:
                new = copy.deepcopy(src_cell)
                new.source = answers[gid].get("source", "")
            else:
                if gid not in seen:
                    repairs.append(f"answer cell {gid} was deleted; its stub was put back")
                new = copy.deepcopy(assignment.release_by_id[gid])
        else:
            new = copy.deepcopy(src_cell)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        nb.cells.append(new)
        if gid is not None:
            nb.cells.extend(extras.get(gid, []))
    return Restored(notebook=nb, repairs=repairs)
