"""Every top-level folder the README names is there in a fresh clone: the committed ones, and
the generated ones (submitted/, autograded/, feedback/, reports/, demo/) with a README that
says what lands there and that it is generated, while what lands there stays out of git."""
from __future__ import annotations

import re
import subprocess

from conftest import ROOT


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _readme_folders() -> tuple[set[str], set[str]]:
    text = (ROOT / "README.md").read_text()
    layout = text.split("## Layout", 1)[1].split("```", 2)[1]
    named = {m.group(1) for m in re.finditer(r"^([a-z][\w.-]*)/", layout, re.M)}
    made = re.search(r"Made by commands, never committed:(.*?)\.\n", text, re.S).group(1)
    generated = set(re.findall(r"`([\w.-]+)/`", made))
    return named, generated


def test_every_folder_the_readme_names_is_in_git():
    named, generated = _readme_folders()
    assert {"source", "release", "graders"} <= named and {"autograded", "submitted", "feedback"} <= generated
    tracked = _git("ls-files").splitlines()
    for folder in sorted(named | generated):
        assert any(path.startswith(folder + "/") for path in tracked), f"{folder}/ is not in a fresh clone"


def test_generated_folders_say_what_lands_there_and_keep_it_out_of_git():
    _, generated = _readme_folders()
    for folder in sorted(generated):
        readme = ROOT / folder / "README.md"
        assert readme.is_file(), folder
        assert "Generated, never committed" in readme.read_text(), folder
        # what a command writes there is ignored; the README itself is not
        probe = f"{folder}/student/01_introduction/01_introduction.ipynb"
        assert _git("check-ignore", "--no-index", probe).strip() == probe, folder
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{folder}/README.md"], cwd=ROOT).returncode == 1
