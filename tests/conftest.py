"""Shared fixtures: the course in this repository, and throwaway copies of it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COURSE_PARTS = ["course_config.py", "nbgrader_config.py", "source", "release", "solutions", "graders", "mistakes"]

sys.path.insert(0, str(ROOT / "src"))
from torchcourse.config import load_course, load_profile  # noqa: E402


def assignments() -> list[str]:
    return list(load_course(ROOT).assignments)


@pytest.fixture(scope="session")
def course():
    return load_course(ROOT)


@pytest.fixture(scope="session")
def profile(course):
    return load_profile(course, "cpu")


def copy_course(dest: Path) -> Path:
    """A copy of the course (no gradebook, no grading output) to run commands in."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in COURSE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        elif src.is_file():
            shutil.copy2(src, dest / part)
    return dest


@pytest.fixture
def course_copy(tmp_path):
    return copy_course(tmp_path / "course")


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command of the environment (course, nbgrader) as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    exe = str(BIN / args[0]) if (BIN / args[0]).exists() else args[0]
    return subprocess.run([exe, *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def tree(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under path with its size and mtime (to prove a command wrote nothing)."""
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}
