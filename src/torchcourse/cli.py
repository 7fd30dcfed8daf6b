"""The `course` command: one subcommand per job, each with --help."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import CourseError, load_course
from .notebook_check import MARKS

DESCRIPTION = """\
Build, grade and check the PyTorch course. Run it from the course root (the folder with
course_config.py), or set COURSE_ROOT."""


def _assignments(course, ids: list[str], need_source: bool = True) -> list[str]:
    return [course.check_assignment(a, need_source) for a in (ids or course.assignments)]


def cmd_build(args) -> int:
    from .build import build

    course = load_course()
    ids = _assignments(course, args.assignments)
    bar, task = progress(2 * len(ids), "building")
    with bar:
        written = build(course, ids, verbose=args.verbose,
                        on_step=lambda path: bar.update(task, advance=1, description=str(path.parent.name)))
    for path in written:
        print(f"built {path.relative_to(course.root)}")
    return 0


def cmd_twin(args) -> int:
    from .build import twin_path
    from .notebooks import notebook_to_twin, read_notebook, twin_to_notebook, write_notebook

    course = load_course()
    for aid in _assignments(course, args.assignments, need_source=not args.from_twin):
        nb_path, twin = course.source_notebook(aid), twin_path(course, aid)
        if args.from_twin:
            if not twin.is_file():
                raise CourseError(f"{twin.relative_to(course.root)} does not exist")
            write_notebook(twin_to_notebook(twin.read_text(), str(twin)), nb_path)
            print(f"wrote {nb_path.relative_to(course.root)} from its twin")
        else:
            text = notebook_to_twin(read_notebook(nb_path))
            tmp = twin.with_name(twin.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(twin)
            print(f"wrote {twin.relative_to(course.root)} from the notebook")
    return 0




def cmd_otter(args) -> int:
    import time

    from .otter_assign import otter_all

    course = load_course()
    ids = _assignments(course, args.assignments)
    started = time.monotonic()
    bar, task = progress(len(ids), "otter assign")
    with bar:
        zips = otter_all(course, ids, verbose=args.verbose,
                         on_step=lambda aid: bar.update(task, advance=1, description=aid))
    for aid, zip_path in zip(ids, zips):
        print(f"wrote otter/{aid}/student/ and otter/{aid}/autograder/ "
              f"(Gradescope zip: {zip_path.relative_to(course.root)})")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def _fmt(x: float) -> str:
    return f"{x:g}"


def _color(text: str, code: str, stream=sys.stdout) -> str:
    return f"\033[{code}m{text}\033[0m" if stream.isatty() and not os.environ.get("NO_COLOR") else text


def _ensure_built(course, aid: str) -> None:
    """Grading needs the assignment in the gradebook; say so rather than fail deep inside."""
    from nbgrader.api import Gradebook, MissingEntry

    from .build import quiet_nbgrader

    with quiet_nbgrader(), Gradebook(course.db_url, course.course_id) as gb:
        try:
            gb.find_assignment(aid)
        except MissingEntry:
            raise CourseError(f"the gradebook has no assignment {aid}: run `course build {aid}` first") from None


def _identify(course, nb_path: Path, explicit: str | None) -> str:
    """Which assignment a notebook belongs to: --assignment, its file name, or its cells."""
    from .notebooks import NotebookError, grade_id, read_notebook

    if explicit:
        return course.check_assignment(explicit)
    if nb_path.stem in course.assignments:
        return course.check_assignment(nb_path.stem)
    try:
        ids = {grade_id(c) for c in read_notebook(nb_path).cells} - {None}
    except NotebookError as err:
        raise CourseError(str(err)) from None
    best, overlap = None, 0
    for aid in course.assignments:
        src = course.source_notebook(aid)
        if src.is_file():
            n = len(ids & {grade_id(c) for c in read_notebook(src).cells})
            if n > overlap:
                best, overlap = aid, n
    if best is None:
        raise CourseError(f"{nb_path} does not look like any assignment of this course; pass --assignment ID")
    return best


def cmd_check(args) -> int:
    import dataclasses

    from .assignment import Assignment
    from .config import load_profile
    from .grading import grade_notebook, hidden_paths

    course = load_course()
    nb_path = Path(args.notebook)
    if not nb_path.is_file():
        raise CourseError(f"{nb_path}: no such notebook")
    aid = _identify(course, nb_path, args.assignment)
    assignment = Assignment.load(course, aid)
    profile = load_profile(course, args.profile)
    check_device(profile)
    if args.profile is None:
        profile = dataclasses.replace(profile, sandbox="best-effort")  # self-learners may not be root
    if not args.json:
        print(f"{aid}: checking {nb_path} against all its tests, hidden ones included")
    graded = grade_notebook(assignment, nb_path.read_bytes(), "you", profile, hide=hidden_paths(course))
    record = graded.record
    solution = course.path("solutions", aid, f"{aid}.ipynb")
    where = solution.relative_to(course.root) if solution.is_file() else "solutions/"
    if args.json:  # for the check under each exercise (notebook_check.py): the record, never test code
        import json
        print(json.dumps({"assignment": aid, "record": record.to_json(), "exercises": assignment.exercise,
                          "solution": str(where)}))
        return 0 if record.score == record.max_score and record.max_score > 0 else 1
    print_check(record, assignment.exercise)
    if record.score < record.max_score:
        print(f"Stuck? Open the hints under the exercise named after a failed test, one at a time. "
              f"The solution is in {where}.")
    if args.html:
        from .feedback import render
        out = Path(args.html)
        if not out.parent.is_dir():
            raise CourseError(f"cannot write {out}: folder {out.parent} does not exist")
        footer = f"Checked with course check. Hints are under each exercise; the solution is in {where}."
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(render(course, assignment, record, graded.notebook, footer=footer), encoding="utf-8")
        tmp.replace(out)
        print(f"wrote {out}")
    return 0 if record.score == record.max_score and record.max_score > 0 else 1


def print_check(record, exercises: dict[str, str]) -> None:
    """One line per graded cell: mark, points, and the message wrapped to the terminal (the
    same lines the check under each exercise prints in a notebook: notebook_check.py)."""
    import shutil

    from .notebook_check import COLORS, cell_lines

    columns = max(60, shutil.get_terminal_size((100, 24)).columns)
    for line, wrapped, cell in cell_lines(record.cells, exercises, columns):
        print(_color(line, COLORS.get(cell.status, "33")), end="")
        if wrapped:
            print("  " + wrapped[0])
            for rest in wrapped[1:]:
                print(" " * (len(line) + 2) + rest)
        else:
            print()
    if record.status != "graded":
        print(f"status: {record.status}" + (f" ({record.reason})" if record.reason else ""))
    for item in record.flags:
        print(f"flag: {item}")
    for item in record.repairs:
        print(f"note: {item}")
    print(f"score: {_fmt(record.score)} / {_fmt(record.max_score)}   (the notebook ran in {record.seconds:.1f} s)")


def progress(total: int, label: str):
    """A progress bar on a terminal (stderr); nothing at all when output goes to a file or pipe."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=console, transient=True,
                   disable=not console.is_terminal)
    task = bar.add_task("", total=total)
    return bar, task


def cmd_grade(args) -> int:
    from .assignment import Assignment
    from .config import load_profile
    from .grading import default_workers, discover, grade_batch

    course = load_course()
    aid = course.check_assignment(args.assignment)
    profile = load_profile(course, args.profile)
    address = args.cluster or profile.cluster
    if address == "local":  # grade here even though the profile names a cluster
        address = ""
    if address:
        from .cluster import check_address
        check_address(address, "--cluster" if args.cluster else f"graders/{profile.name}.toml: cluster")
        if args.workers:
            raise CourseError("--workers sets this machine's parallel submissions; with --cluster, "
                              "the cluster's workers grade (start more of them to go faster)")
        from .cluster import probe
        print(f"connecting to the Dask scheduler at {address}")
        probe(address)  # a wrong or unreachable address is told before anything else is read
    else:
        check_device(profile)  # on a cluster, the workers need the GPU, not this machine
    assignment = Assignment.load(course, aid)
    if not address:
        _start_fork_server(assignment.preload(profile.preload))
    folder = Path(args.submissions) if args.submissions else course.path("submitted")
    if folder.is_file():  # a zip of the submitted/ layout
        import tempfile

        from .grading import unpack_zip
        unpacked = tempfile.TemporaryDirectory(prefix="submissions-")
        folder = unpack_zip(folder, Path(unpacked.name), aid)
    submissions = discover(folder, aid)
    _ensure_built(course, aid)
    if not submissions:
        raise CourseError(f"no submissions of {aid} in {folder} (expected {folder}/<student>/{aid}/{aid}.ipynb)")
    if address:
        return _grade_on_cluster(args, course, assignment, submissions, profile, address, folder)
    workers = args.workers or default_workers(profile)
    if workers < 1:
        raise CourseError("--workers must be at least 1")
    print(f"grading {len(submissions)} submission(s) of {aid} with profile {profile.name}, {workers} worker(s)")
    bar, task = progress(len(submissions), f"grading {aid}")
    with bar:
        records = grade_batch(course, assignment, submissions, profile, workers=workers,
                              hide_extra=[folder.resolve()],
                              on_done=lambda r: bar.update(task, advance=1, description=f"{r.student}: {r.status}"))
    print_records(records)
    return 0


def _grade_on_cluster(args, course, assignment, submissions, profile, address: str, folder: Path) -> int:
    """`course grade --cluster`: the same batch, graded by the workers of a Dask cluster."""
    from .cluster import Cluster
    from .grading import grade_batch

    aid = assignment.id
    cluster = Cluster(address, profile)  # before anything is written: a bad address writes nothing
    try:
        gpu = " (one GPU each)" if cluster.resources else ""
        print(f"grading {len(submissions)} submission(s) of {aid} with profile {profile.name} "
              f"on {cluster.workers} cluster worker(s){gpu}")
        bar, task = progress(len(submissions), f"grading {aid}")
        state = {"retried": 0, "failed": 0, "workers": cluster.workers}

        def show(p) -> None:
            state.update(retried=p.retried, failed=p.failed, workers=p.workers)
            bar.update(task, description=f"{p.workers} worker(s), {p.failed} failed, {p.retried} retried")

        cluster.on_progress = show
        with bar:
            records = grade_batch(course, assignment, submissions, profile, workers=1,
                                  hide_extra=[folder.resolve()], cluster=cluster,
                                  on_done=lambda r: bar.update(task, advance=1))
    finally:
        cluster.close()
    print_records(records)
    print(f"cluster: {len(records)} done, {state['failed']} failed (recorded as crashed), "
          f"{state['retried']} sent again after a worker died")
    return 0


def print_records(records) -> None:
    for r in records:
        extra = f"  ({r.reason})" if r.status != "graded" and r.reason else ""
        print(f"  {r.student:<20} {_fmt(r.score):>5} / {_fmt(r.max_score):<5} {r.status}{extra}")


def cmd_mistakes(args) -> int:
    from .assignment import Assignment
    from .config import load_profile
    from .grading import default_workers
    from .mistakes import run, unproven

    course = load_course()
    aid = course.check_assignment(args.assignment)
    assignment = Assignment.load(course, aid)
    profile = load_profile(course, args.profile)
    workers = args.workers or default_workers(profile)
    outcomes = run(course, assignment, profile, workers, names=args.only)
    for o in outcomes:
        mark = _color("caught", "32") if o.caught else _color("MISSED", "31")
        print(f"  {mark}  {o.mistake.name}")
        if not o.caught or args.verbose:
            print(f"          {o.detail}")
        if args.verbose:
            for gid in o.mistake.caught_by:
                print(f"          {gid}: {o.record.cells[gid].message}")
    caught = sum(o.caught for o in outcomes)
    if not args.only:
        loose = unproven(assignment, outcomes)
        if loose:
            print(f"unproven tests (no entry makes them fail): {', '.join(loose)}")
    print(f"caught: {caught} / {len(outcomes)}")
    return 0 if caught == len(outcomes) else 1


def cmd_feedback(args) -> int:
    from .assignment import Assignment
    from .feedback import write_feedback
    from .grading import Gradebook

    course = load_course()
    aid = course.check_assignment(args.assignment)
    records = Gradebook(course, create=False).current(aid)
    if not records:
        raise CourseError(f"nothing graded for {aid} yet: run `course grade {aid}` first")
    written = write_feedback(course, Assignment.load(course, aid), records)
    print(f"wrote {len(written)} feedback page(s) under feedback/<student>/{aid}/")
    return 0


def cmd_export(args) -> int:
    from .export import to_csv, to_json
    from .grading import Gradebook

    course = load_course()
    aid = course.check_assignment(args.assignment, need_source=False) if args.assignment else None
    records = Gradebook(course, create=False).current(aid)
    if not records:
        raise CourseError("nothing graded yet" + (f" for {aid}" if aid else "") + ": run `course grade` first")
    text = to_csv(records) if args.format == "csv" else to_json(records)
    if args.output:
        out = Path(args.output)
        if out.parent and not out.parent.is_dir():
            raise CourseError(f"cannot write {out}: folder {out.parent} does not exist")
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
        print(f"wrote {len(records)} row(s) to {out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    course = load_course()
    aid = course.check_assignment(args.assignment, need_source=False) if args.assignment else None
    out, sections = write_report(course, aid)
    count = sum(len(sec.records) for sec in sections)
    print(f"wrote {out.relative_to(course.root)} ({count} submission(s), {len(sections)} assignment(s))")
    return 0


def cmd_demo(args) -> int:
    import time

    from .assignment import Assignment
    from .build import build
    from .config import load_profile
    from .demo import DEMO_ASSIGNMENT, demo_root, make_class, use_demo_gradebook
    from .feedback import write_feedback
    from .grading import default_workers, discover, grade_batch

    started = time.monotonic()
    course = load_course()
    use_demo_gradebook(course)
    root = demo_root(course)
    print("1. building release/ and solutions/ for every assignment")
    for path in build(course, list(course.assignments)):
        print(f"   {path.relative_to(course.root)}")
    assignment = Assignment.load(course, DEMO_ASSIGNMENT)
    folder = root / "submitted"
    students = make_class(course, assignment, folder)
    print(f"2. a demo class of {len(students)} for {DEMO_ASSIGNMENT} in {folder.relative_to(course.root)}/")
    profile = load_profile(course, None)
    workers = default_workers(profile)
    print(f"3. grading them (profile {profile.name}, {workers} workers, each in its own sandbox)")
    records = grade_batch(course, assignment, discover(folder, DEMO_ASSIGNMENT), profile,
                          workers=workers, hide_extra=[folder], output_root=root)
    pages = write_feedback(course, assignment, records, output_root=root)
    print(f"4. feedback: {len(pages)} pages under {(root / 'feedback').relative_to(course.root)}/<student>/")
    print()
    print_gradebook(records, students)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; its gradebook is {root.relative_to(course.root)}/gradebook.db")
    return 0


def print_gradebook(records, described: dict[str, str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gradebook", title_justify="left")
    table.add_column("student")
    if described:
        table.add_column("handed in")
    table.add_column("score", justify="right")
    table.add_column("status")
    table.add_column("tests")
    table.add_column("why")
    for r in records:
        marks = "".join(MARKS.get(c.status, "?") for c in r.cells.values())
        why = r.reason or (r.flags[0] if r.flags else "")
        row = [r.student] + ([described.get(r.student, "")] if described else [])
        row += [f"{_fmt(r.score)}/{_fmt(r.max_score)}", r.status, marks, why[:90]]
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log or a pipe: do not wrap at 80 columns
    console.print(table)


def _start_fork_server(preload: list[str]) -> None:
    """Start the fork server now: it imports torch while this process does its own work."""
    from .runner import fork_server

    fork_server(preload)


def check_device(profile) -> None:
    """The gpu profile needs a GPU: say so clearly instead of failing in every test."""
    if profile.device == "cuda":
        import subprocess
        code = ("import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)")
        if subprocess.run([sys.executable, "-c", code]).returncode != 0:
            raise CourseError(f"profile {profile.name} runs tests on CUDA, but this machine has no usable "
                              "GPU (torch.cuda.is_available() is False); use --profile cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("build", help="generate release/ and solutions/ from source/ (nbgrader)",
                       description="Generate the student release and the solutions of each assignment "
                                   "from source/ with nbgrader, and record them in the gradebook. "
                                   "Running it twice changes nothing.")
    p.add_argument("assignments", nargs="*", metavar="ID", help="assignment ids (default: all)")
    p.add_argument("-v", "--verbose", action="store_true", help="show nbgrader's log")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("twin", help="sync a source notebook with its text twin (<id>.pct.py)",
                       description="Write source/<id>/<id>.pct.py (jupytext percent format) from the "
                                   "notebook, or the notebook from the twin with --from-twin.")
    p.add_argument("assignments", nargs="*", metavar="ID", help="assignment ids (default: all)")
    p.add_argument("--from-twin", action="store_true", help="write the .ipynb from the .pct.py")
    p.set_defaults(func=cmd_twin)

    p = sub.add_parser("otter", help="build the otter-grader version and its Gradescope zip (otter assign)",
                       description="Convert source/<ID>/<ID>.ipynb into otter-grader's assignment format and "
                                   "run otter assign on it: otter/<ID>/student/ (the notebook students get, "
                                   "with grader.check on the public tests) and otter/<ID>/autograder/ (the "
                                   "solution, the tests and the Gradescope zip, which grades every submission "
                                   "with this course's grader). Needs `course build` first.")
    p.add_argument("assignments", nargs="*", metavar="ID", help="assignment ids (default: all)")
    p.add_argument("-v", "--verbose", action="store_true", help="show otter assign's output")
    p.set_defaults(func=cmd_otter)

    p = sub.add_parser("grade", help="grade submissions into autograded/ and the gradebook",
                       description="Grade every submission laid out as DIR/<student>/<ID>/<ID>.ipynb, "
                                   "each in its own sandboxed process, into autograded/ and the gradebook.")
    p.add_argument("assignment", metavar="ID")
    p.add_argument("--submissions", metavar="DIR", help="folder (or zip) of submissions (default: submitted/)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel submissions (default: what cores and memory allow)")
    p.add_argument("--profile", metavar="NAME", help="grader profile in graders/ (default: the course's)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="grade on the workers of the Dask scheduler at ADDRESS, e.g. tcp://host:8786 "
                        "(default: the profile's `cluster`, else this machine; `local`: this machine). "
                        "See docs/cluster.md")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("check", help="check one notebook against all its tests (for self-learners)",
                       description="Grade one notebook against its assignment's full tests, hidden ones "
                                   "included, and print one line per graded cell. Exit status 0 only "
                                   "for full marks. Test code is never shown.")
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument("--assignment", metavar="ID", help="which assignment (default: from the notebook)")
    p.add_argument("--profile", metavar="NAME", help="grader profile (default: the course's, sandbox best-effort)")
    p.add_argument("--html", metavar="FILE", help="also write the result as an HTML page")
    p.add_argument("--json", action="store_true",
                   help="print only the record as JSON (what the check under each exercise reads)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("mistakes", help="prove the tests against the assignment's catalogue of wrong answers",
                       description="Grade every entry of mistakes/<ID>.yaml (each a solution with one "
                                   "answer cell made wrong) and report it as caught or missed. Exit "
                                   "status 0 only when all are caught.")
    p.add_argument("assignment", metavar="ID")
    p.add_argument("--only", action="append", metavar="NAME", help="run only the named entry (repeatable)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel runs (default: what cores and memory allow)")
    p.add_argument("--profile", metavar="NAME", help="grader profile in graders/")
    p.add_argument("-v", "--verbose", action="store_true", help="say which tests lost points for each entry")
    p.set_defaults(func=cmd_mistakes)

    p = sub.add_parser("feedback", help="write one HTML feedback page per student",
                       description="Write feedback/<student>/<ID>/<ID>.html for every graded submission: "
                                   "points and message per test, the submission's status, and the "
                                   "student's own cells. Hidden test code never appears.")
    p.add_argument("assignment", metavar="ID")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("export", help="export grades as CSV or JSON, one column per graded cell",
                       description="One row per student and assignment, one column per graded cell.")
    p.add_argument("assignment", metavar="ID", nargs="?", help="one assignment (default: all)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="build, grade a small demo class, print the gradebook",
                       description="Build every assignment, make a demo class for 01_introduction (a "
                                   "solution, an untouched release, catalogued mistakes, a tampering "
                                   "and a corrupt submission) under demo/, grade it, write feedback and "
                                   "print the gradebook.")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="write the class report (HTML with plots) for instructors",
                       description="Write reports/<ID>.html (reports/course.html without ID) from the graded "
                                   "records: the score distribution, the pass rate of each graded cell, the "
                                   "most frequent failure messages, the status counts and the flagged "
                                   "submissions. Test code never appears.")
    p.add_argument("assignment", metavar="ID", nargs="?", help="one assignment (default: all)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    # jsonschema (via nbformat) imports rfc3987_syntax if it can, which compiles a grammar for
    # 1.6 s on every start; it only serves IRI format checks, which nothing here uses.
    sys.modules.setdefault("rfc3987_syntax", None)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as err:
        print(f"course {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"course {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`, say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
