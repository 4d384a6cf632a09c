"""`leukml app` in a real browser: headless Chromium (Debian's chromium + chromium-driver, Selenium)
uploads real cells and a broken file to the page of a model promoted from a tiny training, and
checks what a person sees against the model's own predictions (`leukml predict --csv`).

Screenshots go to $LEUKML_TEST_ARTIFACTS (default: the test's temp folder). The docs' screenshot is
of a trained model, not of this test's tiny one (docs/app.md says how it was taken).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from helpers import free_port, mlflow_store, tiny_config

from leukml.analysis.uncertainty import wilson
from leukml.serving import registry
from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.workflows.train import tracked_train

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
INSTALL = "apt-get install chromium chromium-driver (as root), and pip install selenium"
MODEL = "models:/leukml-all-classifier@champion"
TOKEN = "a-browser-token-of-24ch!"


def _browser_or_skip():
    """The browser's parts; a skip only outside CI (with CI set, a missing browser fails)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium"
    else:
        missing = None if CHROMIUM and CHROMEDRIVER else "chromium / chromedriver"
    if missing and os.environ.get("CI"):
        pytest.fail(f"{missing} missing: the browser tests must run in CI; {INSTALL}")
    if missing:
        pytest.skip(f"{missing} missing; {INSTALL}")


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, tiny_data):
    """A tiny tracked training promoted to champion in its own SQLite store; the store's URI."""
    _browser_or_skip()
    folder = tmp_path_factory.mktemp("app-browser")
    uri = mlflow_store(folder)
    config = tiny_config(
        tiny_data,
        epochs=1,
        batch_size=8,
        split="subject",
        val_fraction=0.2,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUKML_QUIET", "1")
        tracked_train(MlflowTracker("app", uri), config)
        registry.promote("app", metric="val_accuracy", tracking_uri=uri, gradcam_per_class=1)
    return uri


@pytest.fixture(scope="module")
def page(promoted, child_env, tmp_path_factory):
    """`leukml app` on a free 127.0.0.1 port (a child process), guarded by a token; the address to
    open (with ``?token=``) once the page answers."""
    port = free_port()
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    with open(log, "wb") as out:
        app = subprocess.Popen(
            ["leukml", "app", "--port", str(port), "--chunk", "4", "--tracking-uri", promoted],
            env=child_env(LEUKML_APP_TOKEN=TOKEN),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/?token={TOKEN}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if app.poll() is not None or time.monotonic() > deadline:
                os.killpg(app.pid, signal.SIGKILL) if app.poll() is None else None
                pytest.fail(f"leukml app did not serve {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    assert f"open http://127.0.0.1:{port}/?token=$LEUKML_APP_TOKEN" in log.read_text()
    yield url
    os.killpg(app.pid, signal.SIGTERM)
    app.wait(timeout=60)


@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to read what the page's CSP refused
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def _expected(promoted: str, files: list[Path], child_env, folder: Path) -> dict[str, tuple[int, float]]:
    """The model's own answers, by file name: `leukml predict --csv` on the same files."""
    out = folder / "expected.csv"
    subprocess.run(
        ["leukml", "predict", "--model-uri", MODEL, "--csv", str(out), *map(str, files)],
        env=child_env(MLFLOW_TRACKING_URI=promoted),
        check=True,
        capture_output=True,
        timeout=300,
    )
    with open(out, newline="") as f:
        return {Path(r["file"]).name: (int(r["label"]), float(r["p_all"])) for r in csv.DictReader(f)}


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LEUKML_TEST_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(height + 40, 800), 6000))
    driver.save_screenshot(str(path))


def _check_the_download(chrome, files: list[Path], expected: dict[str, tuple[int, float]]) -> None:
    """The page's CSV download: one row per readable file, in upload order, the model's answers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.find_element(By.ID, "download").click()
    csv_file = chrome.downloads / "leukml-predictions.csv"
    WebDriverWait(chrome, 60).until(lambda _: csv_file.is_file() and csv_file.read_text().count("\n") == 11)
    with open(csv_file, newline="") as f:
        downloaded = list(csv.reader(f))
    assert downloaded[0] == ["file", "label", "p_all"]
    assert [r[0] for r in downloaded[1:]] == [p.name for p in files], downloaded  # upload order
    for name, label, p_all in downloaded[1:]:
        assert (int(label), float(p_all)) == pytest.approx(expected[name], abs=1e-6)


def test_a_person_uploads_cells_and_sees_the_models_answers(
    page, promoted, chrome, real_sample, child_env, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cells = sorted(real_sample.rglob("*.bmp"))
    files = cells[:: len(cells) // 10][:10]
    broken = tmp_path / "broken.bmp"
    broken.write_bytes(b"BM this is not a bitmap")
    expected = _expected(promoted, files, child_env, tmp_path)
    artifacts = _artifacts(tmp_path)

    chrome.get(page)
    assert "research tool, not a diagnostic device" in chrome.find_element(By.ID, "disclaimer").text
    model_line = chrome.find_element(By.ID, "model").text
    assert "leukml-all-classifier version 1" in model_line and "alias champion" in model_line
    assert "subject-grouped split: each patient on one side only (unseen patients)" in (
        chrome.find_element(By.ID, "evaluation").text
    )
    chrome.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in [*files[:5], broken, *files[5:]]))
    WebDriverWait(chrome, 300).until(
        lambda d: d.find_element(By.ID, "progress-text").text == "11 of 11 images answered"
    )

    rows = chrome.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert sorted(r.get_attribute("data-file") for r in rows) == sorted(expected)
    for row in rows:
        label, p_all = expected[row.get_attribute("data-file")]
        assert row.find_element(By.CSS_SELECTOR, ".label").text == ("ALL" if label else "hem")
        assert row.find_element(By.CSS_SELECTOR, ".p-all").text == f"{p_all:.4f}"
        assert float(row.get_attribute("data-p-all")) == pytest.approx(p_all, abs=1e-6)
        for picture in row.find_elements(By.TAG_NAME, "img"):
            assert chrome.execute_script("return arguments[0].naturalWidth", picture) > 0
    (message,) = chrome.find_elements(By.CSS_SELECTOR, "#messages li")
    assert message.text.startswith("broken.bmp: not a readable image")
    n_all = sum(label for label, _ in expected.values())
    assert chrome.find_element(By.ID, "n-cells").text == "10"
    assert chrome.find_element(By.ID, "n-all").text == str(n_all)
    assert chrome.find_element(By.ID, "n-hem").text == str(10 - n_all)
    # the page's own Wilson interval (JavaScript) is leukml's
    assert chrome.find_element(By.ID, "f-all-ci").text == str(wilson(n_all, 10))
    assert "not a diagnosis of the patient" in chrome.find_element(By.ID, "summary").text
    chrome.find_element(By.CSS_SELECTOR, "th[data-sort=p_all]").click()  # sorts the table by p_all
    shown = [
        float(r.get_attribute("data-p-all"))
        for r in chrome.find_elements(By.CSS_SELECTOR, "#results tr[data-file]")
    ]
    assert shown == sorted(shown) and len(shown) == 10
    chrome.find_element(By.CSS_SELECTOR, "th[data-sort=index]").click()
    _screenshot(chrome, artifacts / "app-results.png")

    _check_the_download(chrome, files, expected)


def test_file_names_stay_text_and_the_token_leaves_the_address(page, chrome, real_sample, tmp_path):
    """A zip's entry names are anyone's: a quote that would close an attribute, and a tag, are
    shown as the names they are; nothing is injected and no script runs. The token, traded for
    a cookie, leaves the address (where a script could read it), and the page's CSP refuses none
    of the page's own parts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cell = sorted(real_sample.rglob("*.bmp"))[0]
    names = [
        """a" onload="document.title='PWNED'+location.search" b=".bmp""",
        """<img src=x onerror="document.title='PWNED'">.bmp""",
    ]
    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.write(cell, name)
    chrome.get(page)
    WebDriverWait(chrome, 60).until(lambda d: d.execute_script("return location.href") == page.split("?")[0])
    title = chrome.title
    chrome.find_element(By.ID, "files").send_keys(str(archive))
    WebDriverWait(chrome, 300).until(
        lambda d: d.find_element(By.ID, "progress-text").text == "2 of 2 images answered"
    )
    shown = [f"names.zip/{name}" for name in names]
    files = chrome.find_elements(By.CSS_SELECTOR, "#results td.file")
    assert sorted(td.text for td in files) == sorted(shown)
    cells = chrome.find_elements(By.CSS_SELECTOR, "#results img.cell")
    assert sorted(img.get_attribute("alt") for img in cells) == sorted(f"cell {name}" for name in shown)
    injected = "[onload], [onerror], #results img:not(.cell):not(.gradcam)"  # attributes, elements
    assert chrome.execute_script(f"return document.querySelectorAll('{injected}').length") == 0
    assert chrome.title == title and "PWNED" not in chrome.title
    refused = [e["message"] for e in chrome.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused  # the page's own script, styles and pictures all pass its CSP


def test_non_loopback_without_token_is_refused_before_listening(child_env):
    port = free_port()
    refused = subprocess.run(
        ["leukml", "app", "--host", "0.0.0.0", "--port", str(port)],
        env=child_env(LEUKML_APP_TOKEN=""),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "Error: --host 0.0.0.0 is not a loopback address: anyone who can reach it could use the page; "
        "set LEUKML_APP_TOKEN to a secret token (at least 12 characters) or bind 127.0.0.1"
    )
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens
