"""What a person sees, in a real headless Chromium: the MLflow UI of a tiny finished study and its report.

Screenshots go to $PAE_LAB_ARTIFACTS (CI keeps them) or pytest's tmp folder, never into git.
"""
from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian chromium + chromium-driver "
                                "(scripts/install_browser_deps.sh)")


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("PAE_LAB_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    """A tiny finished 3-variant study with its report."""
    from pae_lab.plan.preflight import load_study
    from pae_lab.results.report import build_report
    from pae_lab.execution.driver import Driver

    tmp = tmp_path_factory.mktemp("browser")
    cfg = copy.deepcopy(TINY)
    cfg.update(name="tiny_ui", description="three variants, tiny", output_dir=str(tmp / "study"),
               variants=["baseline", "ssr", "pae"])
    path = tmp / "tiny_ui.yaml"
    path.write_text(yaml.safe_dump(cfg))
    study = load_study(path)
    assert Driver(study, Console(quiet=True)).run().failed == []
    build_report(study.study_dir())
    return path


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=2000,1000"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.timeout(1200)
def test_mlflow_ui_shows_finished_child_runs_with_headline_columns(study_file, browser, artifacts, tmp_path) -> None:
    port, log = free_port(), tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pae_lab", "ui", str(study_file), "--port", str(port)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: next((w for w in log.read_text().split() if w.startswith("http://")), None), 120,
                       "the experiment URL")
        assert "/#/experiments/" in url
        wait_for(lambda: healthy(port) or proc.poll() is not None, 180, "the MLflow server")
        assert proc.poll() is None, log.read_text()
        browser.get(url)
        expand = wait_for(lambda: browser.find_elements(
            "xpath", "//*[@role='gridcell'][.//a[normalize-space()='tiny_ui']]//button"), 60, "the parent run row")
        expand[0].click()
        body = lambda: browser.find_element("tag name", "body").text  # noqa: E731
        wait_for(lambda: all(f"{v}/seed0" in body() for v in ("baseline", "ssr", "pae")), 30, "the child runs")
        browser.save_screenshot(str(artifacts / "mlflow_ui.png"))
        text = body()
        for column in ("fd_effnet_lite0_96", "psnr", "ssc"):  # the grid renders only the columns in view
            assert column in text, column
        statuses = browser.find_elements("css selector", "[role='row']")
        assert len(statuses) >= 5  # header rows + parent + 3 children
        from pae_lab.tracking.store import client, default_uri

        study_dir = Path(yaml.safe_load(study_file.read_text())["output_dir"])
        runs = client(default_uri(study_dir)).search_runs(["1"])
        assert {r.info.status for r in runs} == {"FINISHED"}  # what the green ticks in the page show
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()  # Ctrl-C is a normal way out
    assert "error" not in log.read_text().split("MLflow UI:")[0]


SECTIONS = ("Summary", "Main results", "Convergence", "Images", "Configuration")


@pytest.mark.timeout(1200)
def test_report_html_leads_with_the_answer(study_file, browser, artifacts) -> None:
    study_dir = Path(yaml.safe_load(study_file.read_text())["output_dir"])
    html = study_dir / "report" / "report.html"
    browser.get(html.as_uri())
    browser.save_screenshot(str(artifacts / "report.png"))
    headings = [h.text for h in browser.find_elements("css selector", "h2")]
    found = [next((i for i, h in enumerate(headings) if h.startswith(s)), None) for s in SECTIONS]
    assert None not in found and found == sorted(found), headings
    errors = browser.find_elements("css selector", ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr'], .output_error")
    assert not [e.text for e in errors if "Error" in e.text or "Traceback" in e.text]
    assert "Traceback" not in browser.find_element("tag name", "body").text
