"""The course's configuration (course_config.py) and its grader profiles (graders/*.toml)."""
from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "course_config.py"


class CourseError(Exception):
    """A problem the user can fix; `course` prints it as one line and exits non-zero."""


def find_root(start: Path | None = None) -> Path:
    """The course root: the nearest folder, from `start` upwards, that holds course_config.py."""
    env = os.environ.get("COURSE_ROOT")
    if env:
        root = Path(env).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise CourseError(f"COURSE_ROOT={env} has no {CONFIG_FILE}")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise CourseError(f"no {CONFIG_FILE} in {here} or any folder above it: run course from the course root")


@dataclasses.dataclass
class Course:
    root: Path
    config: Config
    assignments: dict[str, float]
    default_profile: str

    @property
    def course_id(self) -> str:
        return str(self.config.CourseDirectory.get("course_id", "course"))

    @property
    def db_url(self) -> str:
        """COURSE_DB_URL overrides the config (a scratch gradebook for tests or authoring)."""
        return os.environ.get("COURSE_DB_URL") or str(
            self.config.CourseDirectory.get("db_url", f"sqlite:///{self.root / 'gradebook.db'}"))

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def source_notebook(self, assignment: str) -> Path:
        return self.path("source", assignment, f"{assignment}.ipynb")

    def check_assignment(self, assignment: str, need_source: bool = True) -> str:
        if assignment not in self.assignments:
            known = ", ".join(self.assignments) or "none"
            raise CourseError(f"unknown assignment {assignment!r} (this course has: {known})")
        if need_source and not self.source_notebook(assignment).is_file():
            raise CourseError(f"assignment {assignment!r} has no source notebook at "
                              f"{self.source_notebook(assignment).relative_to(self.root)}")
        return assignment

    def nbgrader_config(self) -> Config:
        """The config nbgrader's converters get: ours, with the course root filled in."""
        cfg = Config(self.config)
        cfg.CourseDirectory.root = str(self.root)
        cfg.CourseDirectory.db_url = self.db_url
        return cfg


def load_course(root: Path | None = None) -> Course:
    root = root or find_root()
    loader = PyFileConfigLoader(CONFIG_FILE, path=str(root))
    try:
        cfg = loader.load_config()
    except Exception as err:  # a syntax error in the config file, say
        raise CourseError(f"{root / CONFIG_FILE} could not be loaded: {err}") from None
    section = cfg.get("Course", {})
    assignments = dict(section.get("assignments", {}))
    if not assignments:
        raise CourseError(f"{CONFIG_FILE} lists no assignments (c.Course.assignments)")
    return Course(root=root, config=cfg, assignments=assignments,
                  default_profile=str(section.get("default_profile", "cpu")))


# --- grader profiles ----------------------------------------------------------------------

@dataclasses.dataclass
class Profile:
    """How submissions are run: device, limits and sandbox. Loaded from graders/<name>.toml."""
    name: str
    device: str = "cpu"
    workers: int = 0                  # 0: as many as cores and memory allow
    threads_per_worker: int = 1
    cell_timeout_s: float = 60.0
    notebook_timeout_s: float = 300.0
    memory_mb: int = 3072             # resident memory of one submission, all its processes
    max_processes: int = 64
    max_output_kb: int = 256          # text kept per cell; the rest is cut
    max_file_mb: int = 64             # largest file the submission may write
    scratch_mb: int = 256             # size of its private /tmp
    max_notebook_mb: int = 20         # a bigger submission file is refused as invalid
    sandbox: str = "required"         # required | best-effort | off
    network: bool = False
    preload: list[str] = dataclasses.field(default_factory=list)
    hide: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cluster: str = ""                 # a Dask scheduler (tcp://HOST:PORT) whose workers grade; "": this machine

    def validate(self) -> "Profile":
        if self.sandbox not in ("required", "best-effort", "off"):
            raise CourseError(f"profile {self.name}: sandbox must be required, best-effort or off")
        if self.device not in ("cpu", "cuda"):
            raise CourseError(f"profile {self.name}: device must be cpu or cuda")
        for field in ("cell_timeout_s", "notebook_timeout_s", "memory_mb", "max_processes",
                      "max_output_kb", "max_file_mb", "scratch_mb", "threads_per_worker", "max_notebook_mb"):
            if not getattr(self, field) > 0:
                raise CourseError(f"profile {self.name}: {field} must be positive")
        if not isinstance(self.cluster, str):
            raise CourseError(f"profile {self.name}: cluster must be a string such as \"tcp://scheduler:8786\"")
        if self.cluster:
            from .cluster import check_address
            check_address(self.cluster, f"graders/{self.name}.toml: cluster")
        return self


def load_profile(course: Course, name: str | None = None) -> Profile:
    name = name or course.default_profile
    path = course.path("graders", f"{name}.toml")
    if not path.is_file():
        known = sorted(p.stem for p in course.path("graders").glob("*.toml"))
        raise CourseError(f"unknown grader profile {name!r} (graders/ has: {', '.join(known) or 'none'})")
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise CourseError(f"{path} is not valid TOML: {err}") from None
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = set(data) - fields
    if unknown:
        raise CourseError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return Profile(name=name, **data).validate()


def venv_bin() -> str:
    """The folder of the running interpreter's scripts (nbgrader needs `alembic` on PATH)."""
    return str(Path(sys.executable).parent)
