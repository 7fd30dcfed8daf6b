"""A student in JupyterLab, in a real browser: Debian's Chromium driven by Playwright.

JupyterLab serves a temporary copy of release/01_introduction/ on loopback. The student runs
the untouched notebook (every exercise reads as not attempted), types two answers into the
editor, one of them wrong, runs the check under that exercise (it fails, with the test's
message), fixes the answer, runs again (the visible test and the check now pass), and presses
nbgrader's Validate button.
Screenshots of each stage go to pytest's tmp folder and to /tmp/browser-screenshots/.
`nbgrader validate` (the command behind that button) is checked on the release and the
solution too.

Chromium is installed by scripts/setup-env (apt, as root). The test never downloads a browser.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, ROOT

pytestmark = pytest.mark.browser

AID = "01_introduction"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS_COPY = Path("/tmp/browser-screenshots")
STUB = "Replace this line with your answer."
VISIBLE_TESTS = ["test-grow-sanity", "test-graph-depth-sanity", "test-derivative-sanity", "test-devices-sanity"]

# What the student types: one-liners, so that the editor's auto-indentation cannot change them.
PREDICTIONS = 'predictions = {"c.requires_grad": True, "a.grad": 9.0, "b.grad": None}'
GROW = ("grow = lambda x: x ** 2 if x.abs() >= 1 else grow(x * 2)\n"
        "grow_grad = lambda x: 2 * x if abs(x) >= 1 else 2 * grow_grad(2 * x)")
WRONG_GROW = "grow = lambda x: float(x) ** 2\ngrow_grad = lambda x: 2.0 * x"   # not a tensor: no graph
GROW_CHECK = "check-test-grow-grad"   # the check cell under grow's tests (its cell id)

TIMES: dict[str, float] = {}
START_S = 180      # JupyterLab start, the kernel's first start (imports torch)
RUN_S = 180        # a Run All on a loaded machine
VALIDATE_S = 300   # nbgrader validate starts a kernel and runs the whole notebook


# --- JupyterLab ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab without news, update checks or their toasts, and with `window.jupyterapp` (the
# notebook model, to wait on). Also used for the single-user servers of tests/test_classroom.py.
LAB_ARGS = ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]


def quiet_lab_settings(settings: Path) -> None:
    """Lab user settings (a `user_settings_dir`) that never fetch news."""
    notifications = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notifications.parent.mkdir(parents=True, exist_ok=True)
    notifications.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a throwaway copy of the release, with its own config,
    data, runtime, settings and workspace folders (nothing under ~/.jupyter is touched)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "student"
    shutil.copytree(ROOT / "release" / AID, root)
    home = base / "jupyter"
    quiet_lab_settings(home / "settings")  # no news toast
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    port, token = _free_port(), secrets.token_hex(24)
    log = base / "jupyterlab.log"
    cmd = [str(BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           *LAB_ARGS, f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        began = time.monotonic()
        deadline = began + START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {proc.returncode}:\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {START_S} s:\n{_log_tail(log)}")
            time.sleep(0.5)
        TIMES["JupyterLab start"] = time.monotonic() - began
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root, "log": log}
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of ours left in the group (a kernel)
        except ProcessLookupError:
            pass


# --- Chromium --------------------------------------------------------------------------------

def report_screenshots(request, folder: Path, copy: Path, times: dict[str, float], what: str = "browser") -> None:
    """Say where the screenshots are (and the timings), at the end of the run, pass or fail."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    taken = sorted(p.name for p in folder.glob("*.png"))
    if reporter and capture and taken:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{what} screenshots ({len(taken)}): {folder}, copied to {copy}/")
            if times:
                reporter.write_line(f"{what} test timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


@pytest.fixture(scope="module")
def shots(tmp_path_factory, request):
    """Where screenshots go; said at the end of the run, pass or fail."""
    folder = tmp_path_factory.mktemp("browser-screenshots")
    yield folder
    report_screenshots(request, folder, SHOTS_COPY, TIMES)


def require_chromium() -> None:
    """Fail where scripts/setup-env should have installed Chromium; skip where it cannot."""
    if not CHROMIUM.exists():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup-env installs it (run it, or ./run-tests)")
        pytest.skip(f"Chromium cannot start: {CHROMIUM} is not installed, and scripts/setup-env needs root "
                    "and apt-get to install it")


@contextlib.contextmanager
def chromium_started(launch):
    """`launch(pw.chromium, **options)` with Debian's Chromium and this suite's options; skips
    the test when Chromium cannot start; closes what it started at the end."""
    require_chromium()
    from playwright.sync_api import Error as PlaywrightError, sync_playwright

    try:
        driver = sync_playwright().start()
    except PlaywrightError as err:
        pytest.skip(f"Playwright cannot start: {' '.join(str(err).split())[:400]}")
    try:
        try:
            started = launch(driver.chromium, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                             timeout=120_000)
        except PlaywrightError as err:
            pytest.skip(f"Chromium cannot start: {' '.join(str(err).split())[:400]}")
        try:
            yield started
        finally:
            started.close()
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = str(tmp_path_factory.mktemp("chromium-profile"))
    with chromium_started(lambda chromium, **options: chromium.launch_persistent_context(
            profile, viewport={"width": 1400, "height": 1000}, **options)) as context:
        yield context


# --- the notebook, as JupyterLab holds it --------------------------------------------------

# JavaScript run in the page. `window.jupyterapp` exists because of expose_app_in_browser.
_PANEL = "const p = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
JS_READY = f"""() => {{ {_PANEL}
  const k = p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel;
  return !!(p && p.context && p.context.isReady && p.content && p.content.model && k && k.status === 'idle'); }}"""
JS_CELLS = f"""() => {{ {_PANEL} const m = p.content.model; const out = [];
  for (let i = 0; i < m.cells.length; i++) {{ const c = m.cells.get(i);
    out.push({{index: i, id: (c.getMetadata('nbgrader') || {{}}).grade_id || null, cellId: c.id, type: c.type,
      source: c.sharedModel.getSource(), count: c.type === 'code' ? c.executionCount : null,
      running: c.type === 'code' && c.executionState === 'running',
      outputs: c.type === 'code' ? c.outputs.toJSON() : []}}); }}
  return out; }}"""
# Settled: the kernel is idle, no cell is running or queued, and the cell at `index` has run
# since its execution count was `after` (counts only grow within one kernel).
JS_SETTLED = f"""([index, after]) => {{ {_PANEL} const m = p.content.model;
  const k = p.sessionContext.session && p.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  for (let i = 0; i < m.cells.length; i++) {{ const c = m.cells.get(i);
    if (c.type === 'code' && c.executionState === 'running') return false; }}
  const target = m.cells.get(index);
  return target.executionCount !== null && target.executionCount > after; }}"""
JS_ACTIVE = f"() => {{ {_PANEL} return p.content.activeCellIndex; }}"


def _key(c: dict) -> str:
    """A cell's name here: its grade_id, a check cell's own id, else its position."""
    if c["id"]:
        return c["id"]
    return c["cellId"] if (c.get("cellId") or "").startswith("check-") else f"cell-{c['index']}"


def cells(page) -> dict[str, dict]:
    return {_key(c): c for c in page.evaluate(JS_CELLS)}


def errors(cell: dict) -> list[dict]:
    return [o for o in cell["outputs"] if o["output_type"] == "error"]


def text(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def shown(cell: dict) -> str:
    """What a check cell printed: its text and the plain-text form of what it displayed."""
    return text(cell) + "".join(o.get("data", {}).get("text/plain", "") for o in cell["outputs"]
                                if o["output_type"] == "display_data")


def cell_node(page, gid: str):
    """The DOM node of the cell with this grade_id (cells are in notebook order)."""
    index = next(c["index"] for c in page.evaluate(JS_CELLS) if _key(c) == gid)
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)


def output_area(page, gid: str):
    """The output area of a cell, scrolled into view (off-screen cells are not rendered)."""
    area = cell_node(page, gid).locator(".jp-OutputArea")
    area.scroll_into_view_if_needed()
    return area


def run_all(page, until: str) -> None:
    """Run > Run All Cells, through the menu, then wait until everything settled."""
    target = cells(page)[until]
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    page.wait_for_function(JS_SETTLED, arg=[target["index"], target["count"] or 0], timeout=RUN_S * 1000)


def step_through(page, first: str) -> None:
    """Select the cell `first` and run it and every cell below it one at a time with
    Shift+Enter (Run All stops at the first error, as a student soon finds out)."""
    cell_node(page, first).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")  # command mode
    last = len(page.evaluate(JS_CELLS)) - 1
    while True:
        index = page.evaluate(JS_ACTIVE)
        current = page.evaluate(JS_CELLS)[index]
        page.keyboard.press("Control+Enter" if index == last else "Shift+Enter")
        if current["type"] == "code":
            page.wait_for_function(JS_SETTLED, arg=[index, current["count"] or 0], timeout=RUN_S * 1000)
        if index == last:
            return
        page.wait_for_function(f"() => {{ {_PANEL} return p.content.activeCellIndex > {index}; }}")


def run_cell(page, key: str) -> None:
    """Select one cell and run it (Ctrl+Enter), then wait until it has run."""
    before = cells(page)[key]
    cell_node(page, key).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(JS_SETTLED, arg=[before["index"], before["count"] or 0], timeout=RUN_S * 1000)


def type_answer(page, gid: str, code: str) -> None:
    """Click into the answer cell's editor, select everything, and type the new code."""
    editor = cell_node(page, gid).locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.type(code, delay=5)
    page.keyboard.press("Escape")
    typed = cells(page)[gid]["source"]
    assert typed == code, f"the editor holds something else than what was typed:\n{typed!r}"


def shot(page, folder: Path, name: str, gid: str | None = None, copy: Path = SHOTS_COPY,
         full_page: bool = False) -> Path:
    if gid:
        cell_node(page, gid).scroll_into_view_if_needed()
        page.wait_for_timeout(300)  # let the scroll settle before the picture
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    copy.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, copy / name)
    return path


# --- the tests -------------------------------------------------------------------------------

def _labextension_installed() -> bool:
    listed = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True,
                            timeout=120)
    lines = (listed.stdout + listed.stderr).splitlines()
    return any("@jupyter/nbgrader" in line and "enabled" in line for line in lines)


def test_student_runs_the_release_in_jupyterlab(browser, lab, shots):  # browser first: skip before starting lab
    from playwright.sync_api import expect

    started = time.monotonic()
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{lab['url']}/lab/tree/{AID}.ipynb?token={lab['token']}", timeout=START_S * 1000)
    page.wait_for_function(JS_READY, timeout=START_S * 1000)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    shot(page, shots, "01-opened.png")

    # 1. The untouched release. Run All stops at the first answer cell, which raises the stub.
    run_all(page, until="predictions")
    state = cells(page)
    assert "PyTorch" in text(state["setup"]) and not errors(state["setup"])
    (err,) = errors(state["predictions"])
    assert (err["ename"], err["evalue"]) == ("NotImplementedError", STUB)
    later = [c for c in list(state.values())[state["predictions"]["index"] + 1:] if c["type"] == "code"]
    assert later and all(c["count"] is None and not c["outputs"] for c in later), \
        "Run All should stop at the first error"
    expect(output_area(page, "predictions")).to_contain_text(f"NotImplementedError: {STUB}", use_inner_text=True)
    shot(page, shots, "02-run-all-stops-at-first-stub.png", gid="predictions")

    # The student goes on cell by cell: every visible test reports an error (not attempted).
    step_through(page, "test-predictions")
    state = cells(page)
    assert all(c["count"] is not None for c in state.values() if c["type"] == "code")
    (err,) = errors(state["depth-inputs"])
    assert (err["ename"], err["evalue"]) == ("NotImplementedError", STUB)
    for gid in VISIBLE_TESTS:
        found = errors(state[gid])
        assert len(found) == 1 and (found[0]["ename"], found[0]["evalue"]) == ("NotImplementedError", STUB), \
            (gid, found)
        assert not text(state[gid]), (gid, text(state[gid]))  # no success line
    assert not errors(state["test-predictions"])  # the template dict already has the right keys
    assert "derivative_at_broken failed" in text(state["derivative-broken"])
    expect(output_area(page, "test-grow-sanity")).to_contain_text(f"NotImplementedError: {STUB}",
                                                                  use_inner_text=True)
    expect(output_area(page, "test-grow-sanity")).not_to_contain_text("grow looks right", use_inner_text=True)
    shot(page, shots, "03-visible-tests-not-attempted.png", gid="test-grow-sanity")

    # The check under the grow exercise, on the untouched notebook: not attempted, as graded.
    assert re.search(r"· test-grow-sanity\s+0/1\s+Not attempted", shown(state[GROW_CHECK])), shown(state[GROW_CHECK])

    # 2. The student types two answers into the editor, grow wrong, and checks the exercise.
    type_answer(page, "predictions", PREDICTIONS)
    type_answer(page, "grow", WRONG_GROW)
    shot(page, shots, "04-answers-typed.png", gid="grow")
    run_cell(page, "grow")
    run_cell(page, GROW_CHECK)
    state = cells(page)
    check = shown(state[GROW_CHECK])
    assert not errors(state[GROW_CHECK]), errors(state[GROW_CHECK])
    assert re.search(r"✗ test-grow-sanity\s+0/1", check) and "still connected to x's graph" in check, check
    assert "Hints: under" in check and re.search(r"\? test-grow\s+\?/3", check), check
    expect(output_area(page, GROW_CHECK)).to_contain_text("still connected to x's graph", use_inner_text=True)
    shot(page, shots, "05-check-fails-on-a-wrong-answer.png", gid=GROW_CHECK)

    # The right answer, and everything again.
    type_answer(page, "grow", GROW)
    run_all(page, until="test-grow-sanity")
    state = cells(page)
    for gid in ("predictions", "test-predictions", "grow", "test-grow-sanity", "test-grow", "test-grow-grad"):
        assert not errors(state[gid]), (gid, errors(state[gid]))
    assert "grow looks right so far: 1.44" in text(state["test-grow-sanity"])
    (err,) = errors(state["depth-inputs"])  # the next exercise still waits for an answer
    assert err["ename"] == "NotImplementedError"
    expect(output_area(page, "test-grow-sanity")).to_contain_text("grow looks right so far: 1.44",
                                                                  use_inner_text=True)
    expect(output_area(page, "test-grow-sanity")).not_to_contain_text("Error", use_inner_text=True)
    shot(page, shots, "06-grow-test-passes.png", gid="test-grow-sanity")
    # the check passes now: ✓ for the visible test, ? for the points hidden tests decide; it
    # also notices that the file on disk still holds the stub (the student has not saved yet)
    check = shown(cells(page)[GROW_CHECK])
    assert re.search(r"✓ test-grow-sanity\s+1/1", check) and "✗" not in check, check
    assert "grow looks right" not in check  # a test's own print is not part of the check's report
    assert "still has the stub" in " ".join(check.split()), check
    page.keyboard.press("Control+s")  # File > Save, as the note asks, and the check again
    page.wait_for_function(f"() => {{ {_PANEL} return !p.context.model.dirty; }}")
    run_cell(page, GROW_CHECK)
    check = shown(cells(page)[GROW_CHECK])
    assert re.search(r"✓ test-grow-sanity\s+1/1", check) and "still has the stub" not in " ".join(check.split()), check
    assert re.search(r"\? test-grow-grad\s+\?/2", check), check
    expect(output_area(page, GROW_CHECK)).to_contain_text("✓", use_inner_text=True)
    shot(page, shots, "07-check-passes-on-the-right-answer.png", gid=GROW_CHECK)

    # 3. nbgrader's Validate button (its lab extension), when the extension is installed.
    if not _labextension_installed():
        TIMES["workflow"] = time.monotonic() - started
        print("note: the nbgrader lab extension is not installed; no Validate button to check")
        return
    button = page.locator(".jp-NotebookPanel-toolbar .validate-button")
    button.wait_for(state="visible")
    assert button.inner_text().strip() == "Validate"
    toolbar = page.locator(".jp-NotebookPanel-toolbar")
    toolbar.screenshot(path=str(shots / "08-toolbar-with-validate-button.png"))
    shutil.copy2(shots / "08-toolbar-with-validate-button.png", SHOTS_COPY)
    button.click()  # saves the notebook, then runs `nbgrader validate` on the server
    dialog = page.locator(".jp-Dialog #validation-message")
    dialog.wait_for(state="visible", timeout=VALIDATE_S * 1000)
    message = dialog.inner_text()
    shot(page, shots, "09-validate-results.png")
    failed = message.count("The following cell failed:")
    assert failed == len(VISIBLE_TESTS) - 1, message[:2000]  # grow's visible test passes now
    assert "grow(_x)" not in message and "graph_depth(_x * 2)" in message
    assert "NotImplementedError" in message
    page.locator(".jp-Dialog .jp-Dialog-button").last.click()
    TIMES["workflow"] = time.monotonic() - started


def test_nbgrader_validate(tmp_path):
    """`nbgrader validate`, the command behind the Validate button: the untouched release fails
    its visible tests (without crashing), the solution passes. Run on copies, in a folder of
    their own (nbgrader writes a log file where it runs)."""
    jobs = {}
    for kind, folder in (("release", "release"), ("solution", "solutions")):
        work = tmp_path / kind
        work.mkdir()
        shutil.copy2(ROOT / folder / AID / f"{AID}.ipynb", work)
        nbformat.read(str(work / f"{AID}.ipynb"), 4)  # a readable notebook to start from
        env = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
        env.update(JUPYTER_RUNTIME_DIR=str(work / ".runtime"), IPYTHONDIR=str(work / ".ipython"),
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        jobs[kind] = subprocess.Popen([str(BIN / "nbgrader"), "validate", f"{AID}.ipynb"], cwd=work, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for kind, proc in jobs.items():
        try:
            out, err = proc.communicate(timeout=VALIDATE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"nbgrader validate on the {kind} took longer than {VALIDATE_S} s")
        results[kind] = (proc.returncode, out, err)

    code, out, err = results["release"]
    assert code == 0 and "Traceback (most recent call last)" not in err, err
    assert f"VALIDATION FAILED ON {len(VISIBLE_TESTS)} CELL(S)" in out, out[-2000:]
    assert out.count("The following cell failed:") == len(VISIBLE_TESTS)
    assert out.count(f"NotImplementedError: {STUB}") == len(VISIBLE_TESTS)

    code, out, err = results["solution"]
    assert code == 0 and "Traceback (most recent call last)" not in err, err
    assert "Success! Your notebook passes all the tests." in out, out[-2000:]
