"""`course grade`: grade a folder of submissions into autograded/, the gradebook and records.

Submissions run in parallel (runner.py), each in its own sandboxed process; results come back
to this process, which alone writes the gradebook, one submission at a time, so no write is
lost or interleaved. Scores go into nbgrader's own gradebook tables (so formgrader, manual
grading and `nbgrader export` keep working); what nbgrader has no place for (the status of a
submission, why it stopped, its flags, each test's message) goes into one extra table,
`course_records`, in the same database.
"""
from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import datetime
import json
import os
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable

import psutil
from nbformat import NotebookNode

from .assignment import Assignment, InvalidSubmission, restore
from .config import Course, CourseError, Profile
from .notebooks import NotebookError, grade_id, parse_notebook, role, write_notebook
from .runner import Cell, RunResult, run_cells

STATUSES = ("graded", "flagged", "timed_out", "out_of_memory", "crashed", "invalid", "error")
# error: the grader itself failed on this submission (a file it could not write, a gradebook
# error); the reason says what, and the rest of the batch goes on.


@dataclasses.dataclass
class Submission:
    student: str
    path: Path


@dataclasses.dataclass
class CellScore:
    points: float
    max_points: float
    status: str          # pass | fail | error | not_attempted | not_run | flagged
    message: str = ""


@dataclasses.dataclass
class Record:
    assignment: str
    student: str
    status: str
    reason: str = ""
    flags: list[str] = dataclasses.field(default_factory=list)
    repairs: list[str] = dataclasses.field(default_factory=list)
    cells: dict[str, CellScore] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    sandbox: str = ""

    @property
    def score(self) -> float:
        return sum(c.points for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.cells.values())

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["score"], data["max_score"] = self.score, self.max_score
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        data = dict(data)
        data.pop("score", None)
        data.pop("max_score", None)
        data["cells"] = {k: CellScore(**v) for k, v in data.get("cells", {}).items()}
        return cls(**data)


# --- finding submissions --------------------------------------------------------------------

ZIP_MAX_MEMBERS = 20000
ZIP_MAX_BYTES = 4 * 1024**3


def unpack_zip(archive: Path, into: Path, aid: str) -> Path:
    """Unpack a zip of submissions (<student>/<id>/<id>.ipynb, optionally under one top
    folder such as submitted/) and return the folder that holds the student folders.
    Refuses, before writing anything, members with absolute or '..' paths, links, and archives
    that would unpack to more than ZIP_MAX_MEMBERS files or ZIP_MAX_BYTES bytes."""
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise CourseError(f"{archive} is not a readable zip file ({err})") from None
    with zf:
        members = zf.infolist()
        if len(members) > ZIP_MAX_MEMBERS:
            raise CourseError(f"{archive} holds {len(members)} files (more than {ZIP_MAX_MEMBERS})")
        if sum(m.file_size for m in members) > ZIP_MAX_BYTES:
            raise CourseError(f"{archive} would unpack to more than {ZIP_MAX_BYTES // 1024**3} GB")
        for m in members:
            parts = Path(m.filename).parts
            is_link = (m.external_attr >> 16) & 0o170000 == 0o120000
            if m.filename.startswith(("/", "\\")) or ".." in parts or is_link:
                raise CourseError(f"{archive} holds an unsafe path: {m.filename!r}")
        zf.extractall(into)
    tops = [p for p in into.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
    if not any(into.glob(f"*/{aid}/{aid}.ipynb")) and len(tops) == 1:
        return tops[0]  # one top folder (submitted/, say) around the student folders
    return into

def discover(folder: Path, aid: str) -> list[Submission]:
    """Submissions laid out as <folder>/<student>/<aid>/<aid>.ipynb, sorted by student."""
    if not folder.is_dir():
        raise CourseError(f"submissions folder {folder} does not exist")
    subs = []
    for student_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        nb = student_dir / aid / f"{aid}.ipynb"
        if nb.is_file():
            subs.append(Submission(student=student_dir.name, path=nb))
    return subs


# --- scoring one run ------------------------------------------------------------------------

def _not_run(assignment: Assignment, gid: str, reason: str) -> CellScore:
    return CellScore(0.0, assignment.max_points[gid], "not_run", f"Not run: {reason}.")


def unrun(assignment: Assignment, student: str, status: str, reason: str) -> "Record":
    """The record of a submission none of whose cells ran (invalid, or the grader failed)."""
    return Record(assignment.id, student, status, reason=reason,
                  cells={gid: _not_run(assignment, gid, reason) for gid in assignment.tests})


def score(assignment: Assignment, nb: NotebookNode, cells: list[Cell], run: RunResult) -> tuple[dict[str, CellScore], list[str]]:
    """Points per test cell, and the flags that explain any tampering."""
    flags: list[str] = []
    tamper_from: int | None = None
    for index, what in run.audit:
        flags.append(f"used {what}")
        tamper_from = index if tamper_from is None else min(tamper_from, index)
    for index in sorted(run.results):
        res = run.results[index]
        if res.tampered:
            flags.extend(f"{t} (found at test {grade_id(nb.cells[index])})" for t in res.tampered)
            tamper_from = index if tamper_from is None else min(tamper_from, index)
            break
    for problem in run.protocol_errors:
        flags.append(f"the grading channel received {problem}")
        tamper_from = run.stopped_at if tamper_from is None else tamper_from
    untouched = {grade_id(c) for c in nb.cells if role(c) == "answer"
                 and c.source == assignment.release_by_id[grade_id(c)].source}
    scores: dict[str, CellScore] = {}
    for cell in cells:
        if cell.kind != "test":
            continue
        gid, max_points = cell.label, assignment.max_points[cell.label]
        res = run.results.get(cell.index)
        if res is None:
            scores[gid] = _not_run(assignment, gid, run.reason or "grading stopped before this cell")
            continue
        verdict = res.verdict or {}
        status, message = verdict.get("status", "error"), str(verdict.get("message", ""))
        if tamper_from is not None and cell.index >= tamper_from:
            scores[gid] = CellScore(0.0, max_points, "flagged",
                                    "Did not count: the submission changed what the tests rely on "
                                    "(see the flags); an instructor will review it.")
            continue
        needed = assignment.answers_for.get(gid, [])
        if status in ("fail", "error") and needed and all(a in untouched for a in needed):
            # e.g. a template dict above the stub: the test fails, but nothing was attempted
            status = "not_attempted"
            cells = (f"the answer cell {needed[0]} is" if len(needed) == 1 else
                     f"the answer cells {', '.join(needed)} are")
            message = (f"Not attempted: {cells} still as handed out. Replace the line that raises "
                       "NotImplementedError with your answer (where the cell hands you code to "
                       "repair, repair it and delete that line).")
        scores[gid] = CellScore(max_points if status == "pass" else 0.0, max_points, status, message)
    _name_cascades(assignment, scores)
    return scores, flags


def _name_cascades(assignment: Assignment, scores: dict[str, CellScore]) -> None:
    """A test that fails after a test of an exercise it builds on failed says so first: the
    bug is most likely up there (05: a train_step that clears the gradients too early makes
    train_digits look broken)."""
    broken = ("fail", "error", "not_attempted")
    for gid, score in scores.items():
        if score.status not in ("fail", "error"):
            continue
        for up, names in assignment.upstream.get(gid, []):
            if up in scores and scores[up].status in broken:
                where = assignment.exercise.get(up, up)
                state = "is not attempted yet" if scores[up].status == "not_attempted" else f"failed {up}"
                score.message = (f"Look at {where} first: this exercise builds on your {names} from there, "
                                 f"which {state}, and this failure may follow from it. What this test "
                                 f"found: {score.message}")
                break


def _status(run: RunResult, flags: list[str]) -> str:
    if flags:
        return "flagged"
    return {"timed_out": "timed_out", "out_of_memory": "out_of_memory", "crashed": "crashed",
            "exited": "crashed", "sandbox": "crashed"}.get(run.stopped or "", "graded")


def to_cells(nb: NotebookNode) -> list[Cell]:
    cells, added = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        r = role(cell)
        if r is None:
            added += 1
            cells.append(Cell(index, "free", f"added-{added}", cell.source))
        else:
            cells.append(Cell(index, r, grade_id(cell), cell.source))
    return cells


def fill_outputs(nb: NotebookNode, run: RunResult, scores: dict[str, CellScore]) -> None:
    """Put outputs and verdicts into the notebook, nbgrader style (an error output per failed
    test), for the instructor's copy in autograded/."""
    count = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        res = run.results.get(index)
        if res is None:
            continue
        count += 1
        cell.execution_count = count
        outputs = copy.deepcopy(res.outputs)
        if res.error:
            outputs.append({"output_type": "error", "ename": res.error.get("ename", "Error"),
                            "evalue": res.error.get("evalue", ""),
                            "traceback": [str(t) for t in res.error.get("traceback", [])]})
        gid = grade_id(cell)
        if gid in scores and scores[gid].status != "pass":
            s = scores[gid]
            detail = (res.verdict or {}).get("detail")
            outputs.append({"output_type": "error", "ename": s.status, "evalue": s.message,
                            "traceback": [s.message] + ([detail] if detail else [])})
        for o in outputs:
            if o.get("output_type") == "execute_result":
                o["execution_count"] = count
        cell.outputs = [_node(o) for o in outputs]


def _node(output: dict) -> NotebookNode:
    from nbformat import from_dict
    return from_dict(output)


@dataclasses.dataclass
class Graded:
    record: Record
    notebook: NotebookNode | None


def grade_notebook(assignment: Assignment, raw: bytes | NotebookNode, student: str, profile: Profile,
                   *, hide: list[str], slot: int = 0) -> Graded:
    """Grade one notebook (raw JSON bytes or a parsed notebook). Never raises for student faults."""
    try:
        if isinstance(raw, bytes) and len(raw) > profile.max_notebook_mb * 1024 * 1024:
            raise NotebookError(f"the submission is {len(raw) / 1e6:.0f} MB, over the "
                                f"{profile.max_notebook_mb} MB limit for a notebook")
        submitted = raw if isinstance(raw, NotebookNode) else parse_notebook(raw, "the submission")
        restored = restore(assignment, submitted)
    except (NotebookError, InvalidSubmission) as err:
        return Graded(unrun(assignment, student, "invalid", str(err)), None)
    nb = restored.notebook
    cells = to_cells(nb)
    profile = dataclasses.replace(profile, preload=assignment.preload(profile.preload))
    setup = [Cell(-1, "locked", grade_id(c), c.source) for c in assignment.setup_cells]
    run = run_cells(cells, profile, hide=hide, slot=slot, files=assignment.files,
                    outside=assignment.judged_outside, setup=setup)
    scores, flags = score(assignment, nb, cells, run)
    record = Record(assignment.id, student, _status(run, flags), reason=run.reason, flags=flags,
                    repairs=restored.repairs, cells=scores, seconds=round(run.seconds, 3),
                    peak_rss_mb=round(run.peak_rss_mb, 1), sandbox=run.sandbox)
    if record.status == "flagged" and not record.reason:
        record.reason = "the submission changed what the tests rely on; tests from that point scored zero"
    fill_outputs(nb, run, scores)
    return Graded(record, nb)


# --- the gradebook ----------------------------------------------------------------------------

class Gradebook:
    """nbgrader's gradebook plus our records table, written from one thread only."""

    def __init__(self, course: Course, create: bool = True) -> None:
        """create=False: only read, and never create a database that is not there yet."""
        import sqlalchemy as sa

        self.course = course
        url = sa.engine.make_url(course.db_url)
        # opening a SQLite file that is not there creates it: a read must not write anything
        self.readable = create or not (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
                                       and not Path(url.database).exists())
        self.engine = sa.create_engine(course.db_url)
        self.meta = sa.MetaData()
        self.records = sa.Table(
            "course_records", self.meta,
            sa.Column("assignment", sa.String(128), primary_key=True),
            sa.Column("student", sa.String(128), primary_key=True),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("graded_at", sa.String(40), nullable=False),
        )
        if create:
            self.meta.create_all(self.engine)
        elif self.readable:
            self.readable = sa.inspect(self.engine).has_table("course_records")
        self._nb = None

    def close(self) -> None:
        if self._nb is not None:
            self._nb.close()
            self._nb = None

    def rollback(self) -> None:
        """After a failed write: drop what the session holds, so the next write starts clean."""
        if self._nb is not None:
            try:
                self._nb.db.rollback()
            except Exception:  # noqa: BLE001
                self.close()

    def write(self, record: Record, timestamp: str | None = None) -> None:
        import sqlalchemy as sa
        from nbgrader.api import Gradebook as NbGradebook

        from .build import quiet_nbgrader

        with quiet_nbgrader():
            if self._nb is None:  # one session for the whole batch
                self._nb = NbGradebook(self.course.db_url, self.course.course_id)
            gb = self._nb
            gb.update_or_create_student(record.student)
            kwargs = {"timestamp": timestamp} if timestamp else {}
            gb.update_or_create_submission(record.assignment, record.student, **kwargs)
            for gid, cell in record.cells.items():
                grade = gb.find_grade(gid, record.assignment, record.assignment, record.student)
                grade.auto_score = cell.points
                grade.needs_manual_grade = False
            gb.db.commit()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.records).where(self.records.c.assignment == record.assignment,
                                                       self.records.c.student == record.student))
            conn.execute(sa.insert(self.records).values(
                assignment=record.assignment, student=record.student, status=record.status,
                data=json.dumps(record.to_json()),  # not sorted: cells stay in notebook order
                graded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))

    def load(self, assignment: str | None = None) -> list[Record]:
        import sqlalchemy as sa

        if not self.readable:
            return []
        query = sa.select(self.records.c.data).order_by(self.records.c.assignment, self.records.c.student)
        if assignment:
            query = query.where(self.records.c.assignment == assignment)
        with self.engine.connect() as conn:
            return [Record.from_json(json.loads(row[0])) for row in conn.execute(query)]

    def current(self, assignment: str | None = None) -> list[Record]:
        """Our records, with each cell's points taken from nbgrader's grades, so that a score
        changed by hand in formgrader is what feedback and exports show."""
        from nbgrader.api import Gradebook as NbGradebook, MissingEntry

        from .build import quiet_nbgrader

        records = self.load(assignment)
        if not records:
            return records
        with quiet_nbgrader(), NbGradebook(self.course.db_url, self.course.course_id) as gb:
            for record in records:
                try:
                    sub = gb.find_submission_notebook(record.assignment, record.assignment, record.student)
                except MissingEntry:
                    continue
                for grade in sub.grades:
                    cell = record.cells.get(grade.name)
                    if cell is not None and grade.score is not None and float(grade.score) != cell.points:
                        cell.points = float(grade.score)
                        cell.message = (cell.message + " " if cell.message else "") + "(points set by an instructor)"
        return records


# --- a batch ----------------------------------------------------------------------------------

def default_workers(profile: Profile) -> int:
    """As many as cores allow, but never more than the memory the profile grants each."""
    if profile.workers:
        return profile.workers
    cores = max(1, (os.cpu_count() or 1) // max(1, profile.threads_per_worker))
    available_mb = psutil.virtual_memory().available / 1e6
    by_memory = max(1, int((available_mb - 1024) // profile.memory_mb))
    return max(1, min(cores, by_memory))


def hidden_paths(course: Course, extra: Iterable[Path] = ()) -> list[str]:
    """What a submission must not see: the course folder (source, solutions, gradebook, other
    students, the grader's code and configuration), the grader's home, and more if asked."""
    paths = {str(course.root), os.path.expanduser("~")}
    db = course.db_url
    if db.startswith("sqlite:///"):
        paths.add(str(Path(db[len("sqlite:///"):]).resolve().parent))
    paths.update(str(Path(p).resolve()) for p in extra)
    return sorted(paths)


def _timestamp(path: Path) -> tuple[str | None, str]:
    """The submission's timestamp.txt, if it holds a date nbgrader can read: (timestamp,
    note). Anything else (junk, a huge file, a link) is ignored, and the note says so."""
    stamp = path.parent / "timestamp.txt"
    try:
        if stamp.is_symlink() or not stamp.is_file():
            return None, ""
        if stamp.stat().st_size > 1024:
            return None, "timestamp.txt is not a date (over 1 KB); the submission was recorded without a timestamp"
        text = stamp.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            return None, ""
        from nbgrader.utils import parse_utc
        parse_utc(text)
        return text, ""
    except Exception as err:  # noqa: BLE001  (whatever the file holds, it cannot stop the batch)
        shown = text[:40] if "text" in locals() else ""
        return None, (f"timestamp.txt is not a date nbgrader can read ({shown!r}: {type(err).__name__}); "
                      "the submission was recorded without a timestamp")


def read_submission(path: Path, limit_mb: float) -> bytes:
    """The submitted notebook's bytes. Refuses links (a symbolic link, or a hard link shared
    with another file) anywhere from the student's folder down: a submission is the student's
    own file, never a way to make the grader read another (the source notebook, say)."""
    for part in (path.parent.parent, path.parent):
        if part.is_symlink():
            raise OSError(f"{part.name}/ is a symbolic link; submissions must be plain folders and files")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if path.is_symlink():
            raise OSError("the notebook is a symbolic link; submit the file itself") from None
        raise OSError(err.strerror or str(err)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError("the notebook is not a regular file")
        if info.st_nlink > 1:
            raise OSError("the notebook is a hard link to another file; submit a copy of your own")
        if info.st_size > limit_mb * 1024 * 1024:
            raise OSError(f"it is {info.st_size / 1e6:.0f} MB, over the {limit_mb:g} MB limit")
        return f.read(int(limit_mb * 1024 * 1024) + 1)


class SlotPool:
    """Hands each concurrent run its own slot, hence its own sandbox uid."""

    def __init__(self, n: int) -> None:
        self.free = list(range(n))
        self.lock = threading.Lock()

    def acquire(self) -> int:
        with self.lock:
            return self.free.pop()

    def release(self, slot: int) -> None:
        with self.lock:
            self.free.append(slot)


def _store(graded: Graded, sub: Submission, assignment: Assignment, gradebook: "Gradebook",
           output_root: Path) -> Record:
    """Write one submission's results: autograded/<student>/<id>/ and the gradebook. Every
    step is guarded: a failure (a folder that cannot be written, a gradebook error) becomes
    this submission's record, status `error` with the reason, and never stops the batch."""
    record = graded.record
    stamp, note = _timestamp(sub.path)
    if note:
        record.repairs.append(note)
    out_dir = output_root / "autograded" / sub.student / assignment.id
    try:
        if graded.notebook is not None:
            write_notebook(graded.notebook, out_dir / f"{assignment.id}.ipynb")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "grading.json").write_text(json.dumps(record.to_json(), indent=1) + "\n")
        gradebook.write(record, stamp)
        return record
    except Exception as err:  # noqa: BLE001
        failed = unrun(assignment, sub.student, "error",
                       f"the grader could not store this submission's results ({type(err).__name__}: {err})")
        gradebook.rollback()
        try:
            gradebook.write(failed, None)
        except Exception:  # noqa: BLE001  (the gradebook itself is broken: the record still returns)
            gradebook.rollback()
        return failed


def grade_batch(
    course: Course,
    assignment: Assignment,
    submissions: list[Submission],
    profile: Profile,
    *,
    workers: int,
    hide_extra: Iterable[Path] = (),
    on_done: Callable[[Record], None] | None = None,
    output_root: Path | None = None,
    cluster=None,
) -> list[Record]:
    """Grade every submission; write autograded/, the gradebook and records as each finishes.
    cluster: a cluster.Cluster whose workers grade instead of this machine's (`--cluster`)."""
    output_root = output_root or course.root
    gradebook = Gradebook(course)
    hide = hidden_paths(course, hide_extra)
    if cluster is None:
        results = _grade_here(assignment, submissions, profile, workers, hide)
    else:
        results = _grade_on(cluster, assignment, submissions, profile, hide)

    records: list[Record] = []
    try:
        for sub, graded in results:
            record = _store(graded, sub, assignment, gradebook, output_root)
            records.append(record)
            if on_done:
                on_done(record)
    finally:
        gradebook.close()
    records.sort(key=lambda r: r.student)
    return records


def _read(assignment: Assignment, sub: Submission, profile: Profile) -> bytes | Graded:
    """The submission's bytes, or the record of one that cannot be read."""
    try:
        return read_submission(sub.path, profile.max_notebook_mb)
    except OSError as err:
        return Graded(unrun(assignment, sub.student, "invalid", f"the notebook cannot be graded: {err}"), None)


def _grade_here(assignment: Assignment, submissions: list[Submission], profile: Profile, workers: int,
                hide: list[str]) -> Iterable[tuple[Submission, Graded]]:
    """(submission, result) as each finishes, graded by this machine's worker threads."""
    slots = SlotPool(workers)

    def work(sub: Submission) -> Graded:
        slot = slots.acquire()
        try:
            raw = _read(assignment, sub, profile)
            if isinstance(raw, Graded):
                return raw
            return grade_notebook(assignment, raw, sub.student, profile, hide=hide, slot=slot)
        finally:
            slots.release(slot)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, sub): sub for sub in submissions}
        for future in concurrent.futures.as_completed(futures):
            sub = futures[future]
            try:
                graded = future.result()
            except Exception as err:  # a grader bug must not stop the batch
                graded = Graded(unrun(assignment, sub.student, "error",
                                      f"internal grader error: {type(err).__name__}: {err}"), None)
            yield sub, graded


def _grade_on(cluster, assignment: Assignment, submissions: list[Submission], profile: Profile,
              hide: list[str]) -> Iterable[tuple[Submission, Graded]]:
    """(submission, result) as each comes back from the cluster's workers (cluster.py)."""
    by_student, jobs = {}, []
    for sub in submissions:
        raw = _read(assignment, sub, profile)
        if isinstance(raw, Graded):
            yield sub, raw
        else:
            by_student[sub.student] = sub
            jobs.append((sub.student, raw))
    if jobs:
        for student, graded in cluster.grade(assignment, jobs, profile, hide):
            yield by_student[student], graded
