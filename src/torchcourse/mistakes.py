"""`course mistakes`: prove the hidden tests against a catalogue of known-wrong answers.

mistakes/<id>.yaml lists entries like:

    - name: pick_device hard-codes "cuda"
      cell: devices                  # the answer cell to edit (its grade_id)
      edits:                         # exact text of the solution -> replacement (each must occur once)
        - old: "if torch.cuda.is_available():\\n        return torch.device(\\"cuda\\")"
          new: "return torch.device(\\"cuda\\")"
      # or `source: |` to replace the whole answer cell
      caught_by: [test-pick-device]  # test cells that must lose points
      message: hard-code             # a phrase the feedback of one of them must contain

Each entry is graded like a submission. An entry is caught when every listed test lost points
and one of their messages contains the phrase. A test cell that no entry makes fail is
reported as unproven: nothing shows it can catch anything.
"""
from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
from pathlib import Path

import yaml

from .assignment import Assignment
from .config import Course, CourseError, Profile
from .grading import Record, SlotPool, grade_notebook, hidden_paths
from .notebooks import grade_id, role


@dataclasses.dataclass
class Mistake:
    name: str
    cell: str
    caught_by: list[str]
    message: str
    edits: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    source: str | None = None


@dataclasses.dataclass
class Outcome:
    mistake: Mistake
    caught: bool
    detail: str
    record: Record


def catalogue_path(course: Course, aid: str) -> Path:
    return course.path("mistakes", f"{aid}.yaml")


def load_catalogue(course: Course, assignment: Assignment) -> list[Mistake]:
    path = catalogue_path(course, assignment.id)
    if not path.is_file():
        raise CourseError(f"{assignment.id} has no mistake catalogue at {path.relative_to(course.root)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CourseError(f"{path.relative_to(course.root)} is not valid YAML: {err}") from None
    if not isinstance(data, list) or not data:
        raise CourseError(f"{path.relative_to(course.root)} should be a non-empty list of entries")
    out, names = [], set()
    for i, entry in enumerate(data):
        where = f"{path.relative_to(course.root)}, entry {i + 1}"
        if not isinstance(entry, dict):
            raise CourseError(f"{where}: not a mapping")
        missing = {"name", "cell", "caught_by", "message"} - set(entry)
        if missing:
            raise CourseError(f"{where}: missing {', '.join(sorted(missing))}")
        if ("edits" in entry) == ("source" in entry):
            raise CourseError(f"{where}: give either edits or source")
        if entry["name"] in names:
            raise CourseError(f"{where}: the name {entry['name']!r} is used twice")
        names.add(entry["name"])
        if entry["cell"] not in assignment.answers:
            raise CourseError(f"{where}: {entry['cell']!r} is not an answer cell of {assignment.id}")
        unknown = [t for t in entry["caught_by"] if t not in assignment.tests]
        if unknown or not entry["caught_by"]:
            raise CourseError(f"{where}: caught_by names no test cell or unknown ones: {unknown}")
        edits = [(e["old"], e["new"]) for e in entry.get("edits", [])]
        out.append(Mistake(name=entry["name"], cell=entry["cell"], caught_by=list(entry["caught_by"]),
                           message=str(entry["message"]), edits=edits, source=entry.get("source")))
    return out


def apply(assignment: Assignment, mistake: Mistake):
    """The source notebook (solutions and hidden tests) with one answer cell made wrong."""
    nb = copy.deepcopy(assignment.source)
    for cell in nb.cells:
        if grade_id(cell) == mistake.cell and role(cell) == "answer":
            if mistake.source is not None:
                cell.source = mistake.source
            for old, new in mistake.edits:
                count = cell.source.count(old)
                if count != 1:
                    raise CourseError(f"mistake {mistake.name!r}: the text to replace occurs {count} times "
                                      f"in answer cell {mistake.cell} (it must occur exactly once):\n{old}")
                cell.source = cell.source.replace(old, new)
            return nb
    raise CourseError(f"mistake {mistake.name!r}: no answer cell {mistake.cell}")


def judge(mistake: Mistake, record: Record) -> tuple[bool, str]:
    kept = [t for t in mistake.caught_by if record.cells[t].points >= record.cells[t].max_points]
    if kept:
        return False, f"{', '.join(kept)} kept full points"
    messages = [record.cells[t].message for t in mistake.caught_by]
    if not any(mistake.message.lower() in m.lower() for m in messages):
        return False, f"no message mentions {mistake.message!r}; got: {messages[0][:300]}"
    if record.status == "flagged":
        return False, "the entry was flagged as tampering: " + "; ".join(record.flags[:2])
    lost = [g for g, c in record.cells.items() if c.points < c.max_points]
    return True, f"lost points in {', '.join(lost)}"


def run(course: Course, assignment: Assignment, profile: Profile, workers: int,
        names: list[str] | None = None) -> list[Outcome]:
    catalogue = load_catalogue(course, assignment)
    if names:
        unknown = set(names) - {m.name for m in catalogue}
        if unknown:
            raise CourseError(f"no catalogue entries named {', '.join(sorted(unknown))}")
        catalogue = [m for m in catalogue if m.name in names]
    notebooks = [(m, apply(assignment, m)) for m in catalogue]  # fail fast on a broken edit
    hide = hidden_paths(course)
    slots = SlotPool(workers)

    def one(item) -> Outcome:
        mistake, nb = item
        slot = slots.acquire()
        try:
            graded = grade_notebook(assignment, nb, f"mistake {mistake.name}", profile, hide=hide, slot=slot)
        finally:
            slots.release(slot)
        caught, detail = judge(mistake, graded.record)
        return Outcome(mistake, caught, detail, graded.record)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, notebooks))


def unproven(assignment: Assignment, outcomes: list[Outcome]) -> list[str]:
    """Test cells that no entry made lose points."""
    failed = {g for o in outcomes for g, c in o.record.cells.items() if c.points < c.max_points}
    return [t for t in assignment.tests if t not in failed]
