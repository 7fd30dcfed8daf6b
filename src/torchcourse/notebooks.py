"""Reading notebooks safely, the roles of nbgrader cells, and the text twins of sources.

Every cell of a source notebook has one role, stored as nbgrader metadata in the .ipynb and
as `role="..."` in its text twin (jupytext percent format, `<id>.pct.py`):

    prose    locked markdown (read-only in the release)
    locked   locked code that runs but is not graded (imports, demonstrations)
    answer   the student's cell: nbgrader "solution", with a stub in the release
    test     locked, graded code: nbgrader "grade" with points; may hold hidden tests
    (none)   a free cell with no nbgrader metadata (scratch space)
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

ROLES = ("prose", "locked", "answer", "test")
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_ID_OK = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class NotebookError(Exception):
    """A notebook that cannot be used; the message names the file and the problem."""


# --- reading ------------------------------------------------------------------------------

def parse_notebook(text: str | bytes, label: str) -> NotebookNode:
    """Parse notebook JSON, raising NotebookError with a one-line reason if it is unusable."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise NotebookError(f"{label} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(f"{label} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise NotebookError(f"{label} nests its JSON too deeply to be a notebook") from None
    if "\\ud" in text or "\\uD" in text:
        data = _without_lone_surrogates(data)  # JSON can spell them; UTF-8 files cannot hold them
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{label} is JSON but not a Jupyter notebook (it has no list of cells)")
    if data.get("nbformat") != 4:
        raise NotebookError(f"{label} uses notebook format {data.get('nbformat')!r}; only format 4 is supported")
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{label}: cell {i} is not a code, markdown or raw cell")
        src = cell.get("source", "")
        if isinstance(src, list):
            if not all(isinstance(line, str) for line in src):
                raise NotebookError(f"{label}: cell {i} has a malformed source")
            cell["source"] = "".join(src)
        elif not isinstance(src, str):
            raise NotebookError(f"{label}: cell {i} has a malformed source")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"{label}: cell {i} has malformed metadata")
    return nbformat.from_dict(data)


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def read_notebook(path: str | Path) -> NotebookNode:
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"{path}: no such notebook")
    return parse_notebook(path.read_bytes(), str(path))


def write_notebook(nb: NotebookNode, path: str | Path) -> None:
    """Write deterministically (sorted keys, one-space indent, trailing newline), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    tmp.replace(path)


# --- nbgrader cell metadata ---------------------------------------------------------------

def nbgrader_meta(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def role(cell: NotebookNode) -> str | None:
    """The cell's role (see the module docstring), or None for a free cell."""
    meta = nbgrader_meta(cell)
    if not grade_id(cell):
        return None
    if meta.get("grade") and cell.cell_type == "code":
        return "test"
    if meta.get("solution"):
        return "answer"
    if meta.get("locked"):
        return "prose" if cell.cell_type == "markdown" else "locked"
    return None


def points(cell: NotebookNode) -> float:
    try:
        return float(nbgrader_meta(cell).get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def exercise_headings(cells) -> dict[str, str]:
    """The exercise each test cell belongs to: the last "Exercise" heading above it (its hints
    sit under that heading), else the last section heading. {test grade id: heading}"""
    exercise: dict[str, str] = {}
    heading = ""
    for cell in cells:
        if role(cell) == "prose":
            for line in cell.source.splitlines():
                text = line.lstrip("#").strip()
                if line.startswith("#") and (text.lower().startswith("exercise") or not heading
                                             or not heading.lower().startswith("exercise")):
                    heading = text
        elif role(cell) == "test" and heading:
            exercise[grade_id(cell)] = heading
    return exercise


def _role_metadata(role_name: str, gid: str, pts: Any) -> dict:
    meta = {"grade": False, "grade_id": gid, "locked": True, "schema_version": 3,
            "solution": False, "task": False}
    if role_name == "answer":
        meta.update(locked=False, solution=True)
    elif role_name == "test":
        meta.update(grade=True, points=pts)
    return meta


# --- text twins ---------------------------------------------------------------------------

def twin_to_notebook(text: str, label: str = "twin") -> NotebookNode:
    """Build the source .ipynb from its percent-format twin, with deterministic cell ids."""
    import jupytext

    parsed = jupytext.reads(text, fmt="py:percent")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(_KERNELSPEC), "language_info": {"name": "python"}}
    seen: set[str] = set()
    for index, cell in enumerate(parsed.cells):
        meta = dict(cell.metadata)
        meta.pop("lines_to_next_cell", None)
        role_name, gid, pts = meta.pop("role", None), meta.pop("grade_id", None), meta.pop("points", None)
        if role_name is not None:
            if role_name not in ROLES:
                raise NotebookError(f"{label}: cell {index} has unknown role {role_name!r} (use one of {', '.join(ROLES)})")
            if not gid or not _ID_OK.match(gid):
                raise NotebookError(f"{label}: cell {index} ({role_name}) needs a grade_id of letters, digits, - or _")
            if gid in seen:
                raise NotebookError(f"{label}: grade_id {gid!r} is used twice")
            if role_name == "test" and not (isinstance(pts, (int, float)) and pts > 0):
                raise NotebookError(f"{label}: test cell {gid!r} needs points > 0")
            if (role_name == "prose") != (cell.cell_type == "markdown"):
                raise NotebookError(f"{label}: cell {gid!r}: prose cells are markdown, and only they are")
            seen.add(gid)
            meta["nbgrader"] = _role_metadata(role_name, gid, pts)
        cell_id = gid or f"cell-{index}"
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=meta, id=cell_id)
        else:
            new = nbformat.v4.new_code_cell(cell.source, metadata=meta, id=cell_id)
        nb.cells.append(new)
    return nb


def notebook_to_twin(nb: NotebookNode) -> str:
    """The percent-format twin of a source notebook (roles instead of raw nbgrader JSON)."""
    import jupytext

    nb = copy.deepcopy(nb)
    keys = ["role", "grade_id", "points", "nbgrader"]
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        kept: dict[str, Any] = {}
        r = role(cell)
        if r is not None and meta == _role_metadata(r, grade_id(cell), meta.get("points")) | (
                {"checksum": meta["checksum"]} if "checksum" in meta else {}):
            kept = {"role": r, "grade_id": grade_id(cell)}
            if r == "test":
                kept["points"] = meta["points"]
        elif meta:
            kept = {"nbgrader": {k: v for k, v in meta.items() if k != "checksum"}}
        cell.metadata = kept
        cell.pop("outputs", None) if cell.cell_type != "code" else None
    nb.metadata = {"jupytext": {"cell_metadata_filter": ",".join(keys) + ",-all",
                                "notebook_metadata_filter": "-all",
                                "text_representation": {"extension": ".py", "format_name": "percent"}}}
    return jupytext.writes(nb, fmt="py:percent")
