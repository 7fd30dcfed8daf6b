"""Measure what stock otter and the course's zip give each bad-submission kind (README table).

Usage: .venv/bin/python scripts/otter-stock-vs-zip.py [ID]   (after `course otter 01_introduction`)
Stock otter = the same zip with the plugin removed from otter_config.json: otter runs the
notebook in its plain kernel and runs the same tests. Each `otter run` is stopped after 150 s.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import nbformat  # noqa: E402

import test_otter as T  # noqa: E402

AID = T.AID
LIMIT = 150


def stock_zip(zip_path: Path, into: Path) -> Path:
    out = into / "stock.zip"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "otter_config.json":
                config = json.loads(data)
                config.pop("plugins", None)
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    return out


def otter_run(zip_path: Path, nb, tmp: Path) -> str:
    sub = tmp / f"{AID}.ipynb"
    nbformat.write(nb, str(sub))
    out = tmp / f"out-{time.monotonic_ns()}"
    out.mkdir()
    started = time.monotonic()
    try:
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "otter"), "run", "-a", str(zip_path), "-o", str(out), str(sub)],
                              capture_output=True, text=True, timeout=LIMIT, cwd=tmp)
    except subprocess.TimeoutExpired:
        return f"no result: still running after {LIMIT} s (stopped by us)"
    took = time.monotonic() - started
    results = out / "results.json"
    if not results.is_file():
        last = [l for l in (proc.stderr or proc.stdout).strip().splitlines() if l.strip()][-1:]
        return f"no result: otter failed ({(last or ['?'])[0][:90]}), {took:.0f} s"
    data = json.loads(results.read_text())
    score = data.get("score", sum(t.get("score", 0) for t in data["tests"] if "score" in t))
    total = sum(t.get("max_score", 0) for t in data["tests"])
    status = ""
    for line in str(data.get("output", "")).splitlines()[:1]:
        if "status" in line:
            status = line.split("status", 1)[1].strip(" .") + ", "
    return f"{status}{score:g}/{total:g} ({took:.0f} s)"


def main() -> None:
    built = ROOT
    zip_path = T._zip(built, AID)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stock = stock_zip(zip_path, tmp)
        print("| kind of bad submission | stock otter (plain kernel) | the course's zip (`otter run`) |")
        print("|---|---|---|")
        for kind, code in T.BAD.items():
            if code is None:
                code = T.READS.format(paths=[str(built / "otter" / AID / "autograder" / "course" / "source" / AID / f"{AID}.ipynb"),
                                             "/etc/shadow"])
            nb = T._bad_otter(built, code)
            a = otter_run(stock, nb, tmp)
            b = otter_run(zip_path, nb, tmp)
            print(f"| {kind} | {a} | {b} |", flush=True)


if __name__ == "__main__":
    main()
