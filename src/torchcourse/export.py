"""`course export`: grades as CSV or JSON, one row per student and assignment, one column per
graded cell (stock nbgrader's export has one total per assignment)."""
from __future__ import annotations

import csv
import io
import json

from .grading import Record


def _columns(records: list[Record]) -> tuple[list[tuple[str, str]], bool]:
    """(assignment, grade_id) pairs in first-seen order; prefixed names if several assignments."""
    seen: dict[tuple[str, str], None] = {}
    for r in records:
        for gid in r.cells:
            seen.setdefault((r.assignment, gid), None)
    return list(seen), len({r.assignment for r in records}) > 1


def to_json(records: list[Record]) -> str:
    rows = []
    for r in records:
        rows.append({
            "student": r.student, "assignment": r.assignment,
            "score": r.score, "max_score": r.max_score, "status": r.status, "reason": r.reason,
            "flags": r.flags, "repairs": r.repairs,
            "cells": {gid: c.points for gid, c in r.cells.items()},
            "max_cells": {gid: c.max_points for gid, c in r.cells.items()},
            "cell_status": {gid: c.status for gid, c in r.cells.items()},
            "messages": {gid: c.message for gid, c in r.cells.items() if c.message},
            "seconds": r.seconds, "peak_rss_mb": r.peak_rss_mb,
        })
    return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"


def to_csv(records: list[Record]) -> str:
    columns, prefixed = _columns(records)
    names = [f"{a}/{g}" if prefixed else g for a, g in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "assignment", "score", "max_score", "status", "reason", *names])
    for r in records:
        cells = [("" if r.assignment != a or g not in r.cells else f"{r.cells[g].points:g}") for a, g in columns]
        writer.writerow([r.student, r.assignment, f"{r.score:g}", f"{r.max_score:g}", r.status, r.reason, *cells])
    return out.getvalue()
