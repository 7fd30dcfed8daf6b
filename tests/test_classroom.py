"""A class's week on a real JupyterHub, in Debian's Chromium driven by Playwright.

The hub (tests/classroom_hub.py) runs on loopback with one instructor and two students, each in
a browser context of their own:

1. the three log in (the hub spawns their JupyterLab);
2. the instructor opens formgrader, generates and releases 01_introduction;
3. each student opens nbgrader's Assignments panel, fetches the assignment, opens the notebook,
   types one answer into the editor and fills the rest (ada: the solution; bob: the solution with
   a catalogued mistake), saves, validates and submits;
4. the instructor collects, presses formgrader's autograde button for each submission (stock
   `nbgrader autograde` in the instructor's server, routed by the course's config through the
   sandboxed grader), reads both grades in formgrader, generates and releases feedback;
5. each student fetches their feedback in the Assignments panel and opens the page.

It proves: the grades formgrader shows are those `course grade` gives the same notebooks (cell by
cell), formgrader's autograde went through the course's grader (its per-submission record exists),
students have no formgrader, and each feedback page the students fetch shows their failed tests'
teaching messages and no line of hidden test code. Screenshots of every step go to pytest's tmp
folder and to /tmp/classroom-screenshots/.
"""
from __future__ import annotations

import concurrent.futures
import html
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from classroom_hub import COURSE_ID, SPAWN_S, running_hub
from conftest import ROOT, copy_course, run
from test_browser import JS_READY, cells, chromium_started, report_screenshots, shot, type_answer
from test_nbgrader_buttons import hidden_lines, leaked
from torchcourse.assignment import Assignment
from torchcourse.config import load_course
from torchcourse.mistakes import apply, load_catalogue
from torchcourse.notebooks import grade_id, read_notebook, role

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AID = "01_introduction"
INSTRUCTOR, STUDENTS = "instructor", ["ada", "bob"]
SHOTS_COPY = Path("/tmp/classroom-screenshots")
TIMES: dict[str, float] = {}
BUTTON_S = 240     # a formgrader button: generate, or autograde (the grader) on a loaded machine
VALIDATE_S = 240   # nbgrader validate starts a kernel and runs the whole notebook
# The answer each student types into the editor (one line, so auto-indentation cannot change it);
# bob's is the catalogue's first mistake of 01 ("predicts b.grad is 0, not None"), ada's is right.
TYPED = {"ada": 'predictions = {"c.requires_grad": True, "a.grad": 9.0, "b.grad": None}',
         "bob": 'predictions = {"c.requires_grad": True, "a.grad": 9.0, "b.grad": 0.0}'}


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("classroom-screenshots")
    for old in SHOTS_COPY.glob("*.png"):  # only this test's pictures in the copy
        old.unlink()
    yield folder
    report_screenshots(request, folder, SHOTS_COPY, TIMES, what="classroom")


@pytest.fixture(scope="module")
def chromium():
    """Chromium itself (not one persistent profile, as test_browser uses): every person of the
    class gets a browser context of their own, with their own cookies."""
    with chromium_started(lambda chromium, **options: chromium.launch(**options)) as browser:
        yield browser


@pytest.fixture(scope="module")
def hub(chromium, tmp_path_factory):  # chromium first: skip before starting a hub
    began = time.monotonic()
    with running_hub(tmp_path_factory.mktemp("classroom"), INSTRUCTOR, STUDENTS) as running:
        TIMES["hub start"] = time.monotonic() - began
        yield running


# --- what the class types ----------------------------------------------------------------------

def answers() -> dict[str, dict[str, str]]:
    """grade_id -> source of every answer cell, per student: ada's are the solution's; bob's the
    solution's with the catalogue's first mistake of 01 applied (one cell differs)."""
    course = load_course(ROOT)
    assignment = Assignment.load(course, AID)
    mistake = load_catalogue(course, assignment)[0]
    solution = {grade_id(c): c.source for c in read_notebook(ROOT / "solutions" / AID / f"{AID}.ipynb").cells
                if role(c) == "answer"}
    wrong = {grade_id(c): c.source for c in apply(assignment, mistake).cells if role(c) == "answer"}
    changed = [g for g in solution if wrong[g] != solution[g]]
    assert changed == [mistake.cell] == ["predictions"], changed  # what TYPED["bob"] says in one line
    return {"ada": solution, "bob": wrong}


# --- JupyterLab --------------------------------------------------------------------------------

JS_LAB = "() => !!(window.jupyterapp && window.jupyterapp.shell && document.querySelector('#jp-main-dock-panel'))"
JS_SET_SOURCE = """([gid, source]) => { const m = window.jupyterapp.shell.currentWidget.content.model;
  for (let i = 0; i < m.cells.length; i++) { const c = m.cells.get(i);
    if ((c.getMetadata('nbgrader') || {}).grade_id === gid) { c.sharedModel.setSource(source); return true; } }
  return false; }"""
JS_SAVED = "() => { const p = window.jupyterapp.shell.currentWidget; return !!(p && p.context && !p.context.model.dirty); }"


def log_in(context, hub, user: str):
    """The hub's login form; returns at once (the hub spawns the server meanwhile)."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub.url}/hub/login", timeout=60_000)
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    return page


def wait_for_lab(page, user: str) -> None:
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=SPAWN_S * 1000)
    page.wait_for_function(JS_LAB, timeout=SPAWN_S * 1000)


def open_assignments_panel(page) -> None:
    page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile("^Nbgrader$")).click()
    page.locator('#jp-mainmenu-nbgrader li[data-command="nbgrader:open-assignment-list"]').click()
    for name in ("released", "fetched", "submitted"):
        page.locator(f"#{name}_assignments_list").wait_for()


def assignments_tab(page) -> None:
    page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="Assignments").click()


def notebooks(page):
    """The expanded entry of the fetched assignment: its notebook, with Validate."""
    return page.locator(f"#nbgrader-{COURSE_ID}-{AID}")


def listed(page, name: str):
    """The rows of one list of the Assignments panel, once it has loaded."""
    page.locator(f"#{name}_assignments_list_loading").wait_for(state="hidden")
    return page.locator(f"#{name}_assignments_list > .list_item")


# --- formgrader --------------------------------------------------------------------------------

def formgrader_modal(page, timeout_s: float) -> str:
    """Wait for formgrader's success dialog and return its text (the command's log included);
    fail with the text of an error dialog."""
    modal = page.locator("#success-modal, #error-modal")
    modal.wait_for(state="visible", timeout=timeout_s * 1000)
    text = modal.inner_text()
    if modal.get_attribute("id") != "success-modal":
        pytest.fail(f"formgrader reported an error:\n{text[-3000:]}")
    return text


def close_modal(page) -> None:
    page.locator("#success-modal button.close").last.click()
    page.locator("#success-modal").wait_for(state="detached")


def assignment_button(page, column: str):
    row = page.locator(f'#main-table tr:has(td.name[data-order="{AID}"])')
    return row.locator(f"td.{column} a")


def submission_row(page, student: str):
    return page.locator(f'#main-table tr:has(td.student-id[data-order="{student}"])')


# --- the test ----------------------------------------------------------------------------------

def test_a_week_on_jupyterhub(chromium, hub, shots):
    started = time.monotonic()
    folder, taken = shots, []

    def snap(page, name: str, **kw) -> None:
        """Numbered in the order taken: the story of the week, step by step."""
        taken.append(name)
        shot(page, folder, f"{len(taken):02d}-{name}", copy=SHOTS_COPY, **kw)

    def lap(what: str, since: float) -> float:
        now = time.monotonic()
        TIMES[what] = now - since
        return now

    # 1. Everybody logs in; the three servers spawn side by side.
    people = {user: chromium.new_context(viewport={"width": 1400, "height": 1000})
              for user in [INSTRUCTOR, *STUDENTS]}
    pages = {user: log_in(context, hub, user) for user, context in people.items()}
    for user, page in pages.items():
        try:
            wait_for_lab(page, user)
        except Exception:
            pytest.fail(f"{user}'s JupyterLab did not come up:\n{hub.log_tail()}")
    t = lap("log in, three servers", started)
    teacher = pages[INSTRUCTOR]
    snap(teacher, "instructor-lab.png")
    # Students have no formgrader (turned off for them, as docs/classroom.md says).
    assert pages["ada"].request.get(f"{hub.url}/user/ada/formgrader/manage_assignments").status == 404

    # 2. Formgrader: generate the student version, then release it.
    teacher.goto(f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_assignments")
    assignment_button(teacher, "assign").click()
    assert "Successfully created the student version" in formgrader_modal(teacher, BUTTON_S)
    close_modal(teacher)
    assignment_button(teacher, "release").click()
    assert f"Successfully released '{AID}'" in formgrader_modal(teacher, BUTTON_S)
    close_modal(teacher)
    teacher.locator(f'#main-table tr:has(td.name[data-order="{AID}"]) td.status', has_text="released").wait_for()
    snap(teacher, "formgrader-released.png")
    released = (hub.exchange / COURSE_ID / "outbound" / AID / f"{AID}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in released and "BEGIN SOLUTION" not in released
    t = lap("generate and release", t)

    # 3. Each student: fetch, fill in, save; then validate (both at once, on their own servers), submit.
    filled = answers()
    for student in STUDENTS:
        page = pages[student]
        open_assignments_panel(page)
        rows = listed(page, "released")
        rows.first.locator(".item_name", has_text=AID).wait_for()
        snap(page, f"{student}-released.png")
        rows.first.locator(".item_status button", has_text="Fetch").click()
        listed(page, "fetched").first.locator("a.assignment-notebooks-link").click()
        notebooks(page).locator(".list_item .item_name a", has_text=AID).click()  # opens the notebook
        page.wait_for_function(JS_READY, timeout=SPAWN_S * 1000)
        assert (hub.home(student) / AID / f"{AID}.ipynb").read_text() == released
        type_answer(page, "predictions", TYPED[student])
        for gid, source in filled[student].items():
            if gid != "predictions":
                assert page.evaluate(JS_SET_SOURCE, [gid, source]), gid
        typed = cells(page)
        assert all(typed[g]["source"] == s for g, s in filled[student].items() if g != "predictions")
        page.keyboard.press("Control+s")
        page.wait_for_function(JS_SAVED)
        snap(page, f"{student}-answers-filled.png", gid="predictions")
        on_disk = json.loads((hub.home(student) / AID / f"{AID}.ipynb").read_text())
        assert TYPED[student] in ["".join(c["source"]) for c in on_disk["cells"]]
    for student in STUDENTS:
        assignments_tab(pages[student])
        notebooks(pages[student]).locator(".item_status button", has_text="Validate").click()
    validation = {}
    for student in STUDENTS:
        page = pages[student]
        dialog = page.locator(".jp-Dialog #validation-message")
        dialog.wait_for(state="visible", timeout=VALIDATE_S * 1000)
        validation[student] = dialog.inner_text()
        snap(page, f"{student}-validated.png")
        page.locator(".jp-Dialog .jp-Dialog-button").last.click()
        listed(page, "fetched").first.locator(".item_status button", has_text="Submit").click()
        listed(page, "submitted").first.locator(".item_status button", has_text="Fetch Feedback").wait_for()
        snap(page, f"{student}-submitted.png")
    # Validation runs the visible tests only: both pass them (bob's mistake is for a hidden test).
    for student, message in validation.items():
        assert "Success! Your notebook passes all the tests." in message, (student, message[:2000])
    t = lap("students fetch, fill, validate, submit", t)

    # 4. Formgrader: collect, autograde each submission, read the grades.
    teacher.goto(f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_assignments")
    assignment_button(teacher, "collect").click()
    assert "Successfully collected" in formgrader_modal(teacher, BUTTON_S)
    close_modal(teacher)
    collected = {s: hub.course / "submitted" / s / AID / f"{AID}.ipynb" for s in STUDENTS}
    assert all(p.is_file() for p in collected.values())
    by_course = _course_grade_in_background(hub, collected)
    teacher.locator(f'#main-table tr:has(td.name[data-order="{AID}"]) td.num-submissions a', has_text="2").click()
    teacher.wait_for_url(re.compile(rf"/formgrader/manage_submissions/{AID}"))
    for student in STUDENTS:
        submission_row(teacher, student).locator("td.status", has_text="needs autograding").wait_for()
    snap(teacher, "formgrader-collected.png")
    for student in STUDENTS:
        submission_row(teacher, student).locator("td.autograde a").click()
        log = formgrader_modal(teacher, BUTTON_S)
        assert f"Successfully autograded '{AID}' for student '{student}'" in log
        # the course's SandboxedAutograde graded it (its log line, in formgrader's dialog)
        assert re.search(rf"{AID} {student}: graded, \d+/22", log), log[-2000:]
        assert "Applying preprocessor: SandboxedAutograde" in log
        assert "Applying preprocessor: Execute" not in log  # nbgrader's own kernel never ran
        snap(teacher, f"formgrader-autograded-{student}.png")
        close_modal(teacher)
    shown = {}
    for student in STUDENTS:
        row = submission_row(teacher, student)
        row.locator("td.status", has_text="graded").wait_for()
        shown[student] = row.locator("td.score").inner_text().strip()
    snap(teacher, "formgrader-grades.png")
    t = lap("collect and autograde", t)

    # 5. Formgrader: generate and release feedback.
    teacher.goto(f"{hub.url}/user/{INSTRUCTOR}/formgrader/manage_assignments")
    assignment_button(teacher, "generate-feedback").click()
    assert "Successfully generated feedback" in formgrader_modal(teacher, BUTTON_S)
    close_modal(teacher)
    assignment_button(teacher, "release-feedback").click()
    assert "Successfully released feedback" in formgrader_modal(teacher, BUTTON_S)
    close_modal(teacher)
    snap(teacher, "formgrader-feedback-released.png")
    t = lap("generate and release feedback", t)

    # 6. Each student fetches feedback and opens the page.
    seen = {}
    for student in STUDENTS:
        page = pages[student]
        assignments_tab(page)
        page.locator("#refresh_assignments_list").click()
        listed(page, "submitted").first.locator(".item_status button", has_text="Fetch Feedback").click()
        view = page.locator("#submitted_assignments_list a", has_text="(view feedback)")
        view.first.wait_for(timeout=BUTTON_S * 1000)
        view.first.click()  # the file browser goes to the feedback folder
        snap(page, f"{student}-feedback-fetched.png")
        (fetched_page,) = (hub.home(student) / AID / "feedback").glob(f"*/{AID}.html")
        relative = fetched_page.relative_to(hub.home(student)).as_posix()
        viewer = people[student].new_page()
        viewer.goto(f"{hub.url}/user/{student}/files/{relative}")
        seen[student] = (fetched_page, viewer.locator("body").inner_text())
        verdict = _record(hub.course, student)["cells"]["test-predictions"]
        if verdict["status"] != "pass":  # bob's: scroll to the message he gets
            viewer.get_by_text(verdict["message"].splitlines()[0][:60]).first.scroll_into_view_if_needed()
        snap(viewer, f"{student}-feedback-page.png")
    t = lap("students fetch feedback", t)

    # --- what it proves -------------------------------------------------------------------------
    graded = by_course.result(timeout=BUTTON_S)
    for student in STUDENTS:
        record = _record(hub.course, student)  # written by the course's grader, not by nbgrader's kernel
        assert record["status"] == "graded", (student, record["status"], record["reason"])
        want = graded[student]
        assert shown[student] == f"{_num(want['score'])} / {_num(want['max_score'])}", (student, shown[student], want)
        assert {g: c["points"] for g, c in record["cells"].items()} == \
               {g: c["points"] for g, c in want["cells"].items()}, student
    assert graded["ada"]["score"] == graded["ada"]["max_score"] == 22
    assert graded["bob"]["score"] == 19 and graded["bob"]["cells"]["test-predictions"]["points"] == 0

    hidden = hidden_lines(AID)
    for student, (page_file, visible) in seen.items():
        own = {line.strip() for c in json.loads(collected[student].read_text())["cells"]
               for line in "".join(c["source"]).splitlines()}
        assert not leaked(page_file, hidden, own), (student, leaked(page_file, hidden, own)[:5])
        assert "BEGIN HIDDEN TESTS" not in page_file.read_text()
        text = html.unescape(page_file.read_text())
        failed = [c for c in _record(hub.course, student)["cells"].values() if c["status"] != "pass"]
        for cell in failed:
            first = cell["message"].splitlines()[0][:60]
            assert first in text and first in visible, (student, first)
        assert bool(failed) == (student == "bob")
        score = graded[student]["score"]
        assert f"{AID} (Score: {float(score)} / 22.0)" in visible, (student, visible[:300])
        shown_text = folder / f"{student}-feedback-as-shown.txt"  # what the browser showed, same check
        shown_text.write_text(visible)
        assert not leaked(shown_text, hidden, own), student
    TIMES["whole test"] = time.monotonic() - started


def _record(course: Path, student: str) -> dict:
    return json.loads((course / "autograded" / student / AID / "grading.json").read_text())


def _num(x: float) -> str:
    """A score as formgrader prints it (JavaScript's number to string, two decimals at most)."""
    x = round(float(x), 2)
    return str(int(x)) if x == int(x) else str(x)


def _course_grade_in_background(hub, collected: dict[str, Path]) -> concurrent.futures.Future:
    """`course grade` of the same collected notebooks, in a copy of the course of its own, while
    the browser goes on; its per-student records."""
    def grade() -> dict[str, dict]:
        course = copy_course(hub.home(INSTRUCTOR).parent.parent / "by-course")
        for student, notebook in collected.items():
            dest = course / "submitted" / student / AID / f"{AID}.ipynb"
            dest.parent.mkdir(parents=True)
            shutil.copy2(notebook, dest)
        for args in (["course", "build", AID], ["course", "grade", AID]):
            done = run(args, cwd=course, timeout=BUTTON_S)
            assert done.returncode == 0, (args, (done.stdout + done.stderr)[-3000:])
        return {s: _record(course, s) for s in collected}

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(grade)
    pool.shutdown(wait=False)
    return future
