"""Grading speed, side by side, on the same submissions.

For each assignment (default: the lightest and the heaviest, by solution run time), it makes
N submissions (default 20: full solutions, catalogued mistakes, partly done notebooks and
untouched releases), then times in one run:

  nbgrader   stock `nbgrader autograde` of the same course with nbgrader's own execution
             (one kernel per notebook, one notebook at a time): STOCK_EXECUTION below undoes
             course_config.py's routing of autograde through the course's grader
  course     `course grade` with its default settings
  bare       the same notebooks executed with nbclient, one after another, no grading

and prints seconds per submission, the ratios course/nbgrader and course/bare, the peak memory
of a worker, and whether both graders gave every submission the same score.

    .venv/bin/python benchmarks/grading.py                       # lightest and heaviest
    .venv/bin/python benchmarks/grading.py 01_introduction --n 10
    .venv/bin/python benchmarks/grading.py --json results.json   # also save the figures
    .venv/bin/python benchmarks/grading.py --cluster             # course grade --cluster, 1, 2, 4 workers

--cluster measures `course grade --cluster` instead, on a Dask scheduler and 1, 2 and 4 worker
processes (one thread each) started on this machine's loopback (tests/daskcluster.py): the
throughput with a cold cluster (each worker's fork server starts on its first submission, as
local grading's does) and a warm one (the same cluster grading the class again), against local
`course grade` with 1 and 2 workers, and the overhead the cluster adds per submission: (cold
cluster with 1 worker - local with 1 worker) / N, where both pay one fork server start.

Run it on an otherwise idle machine: it measures wall time.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

import nbformat  # noqa: E402

from torchcourse.assignment import Assignment  # noqa: E402
from torchcourse.config import load_course, load_profile  # noqa: E402
from torchcourse.grading import default_workers, grade_notebook, hidden_paths  # noqa: E402
from torchcourse.mistakes import apply, load_catalogue  # noqa: E402
from torchcourse.notebooks import grade_id, read_notebook, role  # noqa: E402

PARTS = ["course_config.py", "nbgrader_config.py", "source", "release", "solutions", "graders", "mistakes"]


def env(extra: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(extra or {})
    return e


def make_submissions(course, assignment: Assignment, n: int) -> dict[str, nbformat.NotebookNode]:
    """A deterministic class: 40% solutions, 30% catalogued mistakes, 20% half done, 10% blank."""
    aid = assignment.id
    solution = read_notebook(ROOT / "solutions" / aid / f"{aid}.ipynb")
    release = read_notebook(ROOT / "release" / aid / f"{aid}.ipynb")
    catalogue = load_catalogue(course, assignment)
    subs = {}
    for i in range(n):
        kind = ["solution", "mistake", "solution", "partial", "mistake", "solution", "partial",
                "mistake", "solution", "blank"][i % 10]
        if kind == "solution":
            nb = copy.deepcopy(solution)
        elif kind == "blank":
            nb = copy.deepcopy(release)
        elif kind == "mistake":
            nb = apply(assignment, catalogue[(i * 7) % len(catalogue)])
            # what a student hands in has no hidden tests: put the release text of test cells back
            for cell in nb.cells:
                if role(cell) == "test":
                    cell.source = assignment.release_by_id[grade_id(cell)].source
        else:  # partial: the second half of the answers left as stubs
            nb = copy.deepcopy(solution)
            answers = [c for c in nb.cells if role(c) == "answer"]
            for cell in answers[len(answers) // 2:]:
                cell.source = assignment.release_by_id[grade_id(cell)].source
        subs[f"s{i:02d}-{kind}"] = nb
    return subs


def course_copy(tmp: Path) -> Path:
    root = tmp / "course"
    root.mkdir()
    for part in PARTS:
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    return root


# nbgrader's own Autograde pipeline (its defaults, plus the stderr fix), for comparison only:
# course_config.py sends stock autograde through the sandboxed grader instead.
STOCK_EXECUTION = [
    "--Autograde.exporter_class=nbconvert.exporters.NotebookExporter",
    *(f"--Autograde.sanitize_preprocessors=nbgrader.preprocessors.{p}"
      for p in ("ClearOutput", "DeduplicateIds", "OverwriteKernelspec", "OverwriteCells", "CheckCellMetadata")),
    *(f"--Autograde.autograde_preprocessors={p}" for p in (
        "nbgrader.preprocessors.Execute", "torchcourse.nbgrader_plugins.DropStderrFromTests",
        "nbgrader.preprocessors.IgnorePattern", "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput", "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties", "nbgrader.preprocessors.CheckCellMetadata")),
]


def run_nbgrader(root: Path, aid: str) -> tuple[float, dict[str, float]]:
    # nbgrader skips a submission that already has an autograded/ folder: start clean
    shutil.rmtree(root / "autograded", ignore_errors=True)
    r = subprocess.run([str(BIN / "nbgrader"), "generate_assignment", aid, "--force"], cwd=root,
                       env=env(), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"nbgrader generate_assignment failed:\n{r.stderr[-2000:]}")
    started = time.perf_counter()
    r = subprocess.run([str(BIN / "nbgrader"), "autograde", aid, *STOCK_EXECUTION], cwd=root, env=env(),
                       capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if r.returncode:
        print(f"  (nbgrader autograde exited {r.returncode}: {r.stderr.strip().splitlines()[-1:]})")
    from nbgrader.api import Gradebook
    scores = {}
    with Gradebook(f"sqlite:///{root}/gradebook.db") as gb:
        for sub in gb.assignment_submissions(aid):
            scores[sub.student.id] = float(sub.score)
    return seconds, scores


def run_course(root: Path, aid: str, submitted: Path) -> tuple[float, dict[str, float], list[float], int]:
    shutil.rmtree(root / "autograded", ignore_errors=True)
    db = {"COURSE_DB_URL": f"sqlite:///{root}/course-gradebook.db"}
    r = subprocess.run([str(BIN / "course"), "build", aid], cwd=root, env=env(db), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"course build failed: {r.stderr}")
    started = time.perf_counter()
    r = subprocess.run([str(BIN / "course"), "grade", aid, "--submissions", str(submitted)], cwd=root,
                       env=env(db), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if r.returncode:
        raise SystemExit(f"course grade failed: {r.stderr}")
    out = subprocess.run([str(BIN / "course"), "export", aid, "--format", "json"], cwd=root, env=env(db),
                         capture_output=True, text=True)
    rows = json.loads(out.stdout)
    workers = int(r.stdout.split(" worker(s)")[0].rsplit(", ", 1)[1]) if " worker(s)" in r.stdout else 0
    return seconds, {row["student"]: float(row["score"]) for row in rows}, [row["peak_rss_mb"] for row in rows], workers


def run_bare(notebooks: dict[str, nbformat.NotebookNode], workdir: Path) -> float:
    from nbclient import NotebookClient
    started = time.perf_counter()
    for nb in notebooks.values():
        nb = copy.deepcopy(nb)
        NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=600,
                       resources={"metadata": {"path": str(workdir)}}).execute(
            stderr=subprocess.DEVNULL)  # the kernel's own start-up warnings, not the notebook's output
    return time.perf_counter() - started


def solution_seconds(course, aid: str) -> float:
    assignment = Assignment.load(course, aid)
    nb = read_notebook(ROOT / "solutions" / aid / f"{aid}.ipynb")
    return grade_notebook(assignment, nb, "bench", load_profile(course, "cpu"), hide=hidden_paths(course)).record.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", help="default: the lightest and the heaviest")
    parser.add_argument("--n", type=int, default=20, help="submissions per assignment (default 20)")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--cluster", action="store_true",
                        help="measure course grade --cluster with 1, 2 and 4 local worker processes")
    parser.add_argument("--cluster-workers", default="1,2,4", help="worker processes to try (default 1,2,4)")
    args = parser.parse_args()
    course = load_course(ROOT)
    if args.cluster:
        return cluster_benchmark(course, args)
    chosen = args.assignments
    if not chosen:
        times = {aid: solution_seconds(course, aid) for aid in course.assignments}
        ordered = sorted(times, key=times.get)
        chosen = [ordered[0], ordered[-1]] if len(ordered) > 1 else ordered
        print("solution run time per assignment (s): " + ", ".join(f"{a} {times[a]:.1f}" for a in ordered))
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; default workers: {default_workers(load_profile(course, None))}")
    results = []
    for aid in chosen:
        assignment = Assignment.load(course, aid)
        notebooks = make_submissions(course, assignment, args.n)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            root = course_copy(Path(tmp))
            submitted = root / "submitted"
            for student, nb in notebooks.items():
                path = submitted / student / aid / f"{aid}.ipynb"
                path.parent.mkdir(parents=True)
                nbformat.write(nb, str(path))
            print(f"\n{aid}: {len(notebooks)} submissions")
            c_sec, c_scores, peaks, workers = run_course(root, aid, submitted)
            print(f"  course grade   {c_sec:7.1f} s  ({c_sec / args.n:.2f} s per submission, {workers} workers)")
            n_sec, n_scores = (float("nan"), {})
            if not args.skip_nbgrader:
                n_sec, n_scores = run_nbgrader(root, aid)
                print(f"  nbgrader       {n_sec:7.1f} s  ({n_sec / args.n:.2f} s per submission)")
            b_sec = float("nan")
            if not args.skip_bare:
                work = root / "release" / aid
                b_sec = run_bare(notebooks, work)
                print(f"  bare nbclient  {b_sec:7.1f} s  ({b_sec / args.n:.2f} s per submission)")
            same = [s for s in c_scores if s in n_scores and abs(c_scores[s] - n_scores[s]) < 1e-9]
            differ = {s: (c_scores[s], n_scores.get(s)) for s in c_scores if s not in same}
            row = {"assignment": aid, "n": args.n, "course_s": c_sec, "nbgrader_s": n_sec, "bare_s": b_sec,
                   "course_per_sub": c_sec / args.n, "nbgrader_per_sub": n_sec / args.n, "bare_per_sub": b_sec / args.n,
                   "course_over_nbgrader": c_sec / n_sec, "course_over_bare": c_sec / b_sec, "workers": workers,
                   "peak_worker_mb_max": max(peaks), "peak_worker_mb_median": statistics.median(peaks),
                   "same_scores": len(same), "differing_scores": differ}
            results.append(row)
            print(f"  course/nbgrader {row['course_over_nbgrader']:.3f}   course/bare {row['course_over_bare']:.3f}")
            print(f"  peak memory per worker: median {row['peak_worker_mb_median']:.0f} MB, max {row['peak_worker_mb_max']:.0f} MB")
            if n_scores:
                print(f"  same score from both graders: {len(same)} / {len(c_scores)}" + (f"; differ: {differ}" if differ else ""))
    print("\n| assignment | n | nbgrader s/sub | course s/sub | bare s/sub | course/nbgrader | course/bare | peak MB/worker | same scores |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['assignment']} | {r['n']} | {r['nbgrader_per_sub']:.2f} | {r['course_per_sub']:.2f} | {r['bare_per_sub']:.2f} "
              f"| {r['course_over_nbgrader']:.3f} | {r['course_over_bare']:.3f} | {r['peak_worker_mb_max']:.0f} | {r['same_scores']}/{r['n']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine,
                                               "results": results}, indent=1))
    return 0


def _grade(root: Path, aid: str, submitted: Path, *extra: str) -> float:
    shutil.rmtree(root / "autograded", ignore_errors=True)
    db = {"COURSE_DB_URL": f"sqlite:///{root}/course-gradebook.db"}
    started = time.perf_counter()
    r = subprocess.run([str(BIN / "course"), "grade", aid, "--submissions", str(submitted), *extra], cwd=root,
                       env=env(db), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if r.returncode:
        raise SystemExit(f"course grade {' '.join(extra)} failed: {r.stderr}")
    return seconds


def cluster_benchmark(course, args) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from daskcluster import LocalDask

    chosen = args.assignments or ["01_introduction"]
    counts = [int(k) for k in args.cluster_workers.split(",")]
    machine = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}")
    rows = []
    for aid in chosen:
        assignment = Assignment.load(course, aid)
        notebooks = make_submissions(course, assignment, args.n)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            root = course_copy(Path(tmp))
            submitted = root / "submitted"
            for student, nb in notebooks.items():
                path = submitted / student / aid / f"{aid}.ipynb"
                path.parent.mkdir(parents=True)
                nbformat.write(nb, str(path))
            db = {"COURSE_DB_URL": f"sqlite:///{root}/course-gradebook.db"}
            r = subprocess.run([str(BIN / "course"), "build", aid], cwd=root, env=env(db), capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"course build failed: {r.stderr}")
            print(f"\n{aid}: {args.n} submissions")
            local = {k: _grade(root, aid, submitted, "--workers", str(k)) for k in (1, 2)}
            for k, sec in local.items():
                print(f"  local, {k} worker(s)    {sec:6.1f} s  {args.n / sec:5.2f} submissions/s")
            row = {"assignment": aid, "n": args.n, "local_s": local, "cluster": {}}
            for k in counts:
                with LocalDask(Path(tmp) / f"dask{k}", workers=k) as cl:
                    cold = _grade(root, aid, submitted, "--cluster", cl.address)
                    warm = _grade(root, aid, submitted, "--cluster", cl.address)
                row["cluster"][k] = {"cold_s": cold, "warm_s": warm}
                print(f"  cluster, {k} worker(s)  {cold:6.1f} s cold ({args.n / cold:5.2f}/s), "
                      f"{warm:6.1f} s warm ({args.n / warm:5.2f}/s)")
            if 1 in row["cluster"]:
                row["overhead_per_sub_s"] = (row["cluster"][1]["cold_s"] - local[1]) / args.n
                print(f"  overhead of the cluster per submission: {row['overhead_per_sub_s'] * 1000:.0f} ms")
            rows.append(row)
    print("\n| assignment | workers | local s | cluster s (cold) | cluster s (warm) | warm submissions/s | speed-up over 1 worker (warm) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        base = row["cluster"].get(1, {}).get("warm_s")
        for k, c in row["cluster"].items():
            local = row["local_s"].get(k)
            speed = f"{base / c['warm_s']:.2f}x" if base else "-"
            print(f"| {row['assignment']} | {k} | {f'{local:.1f}' if local else '-'} | {c['cold_s']:.1f} | {c['warm_s']:.1f} "
                  f"| {row['n'] / c['warm_s']:.2f} | {speed} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine,
                                               "cluster": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
