"""The review app in a real browser (headless Chromium through Selenium), served by uvicorn.

Logs in, opens the worklist and an image, marks two regions on the body chart and waits for the
TBSA and fluids that `burnscope decide` gives for the same case, verifies the finding, and finds
the verified SR on disk passing dciodvfy. Screenshots of every page go to
``$BURNSCOPE_SCREENSHOTS`` (docs/images/review when the docs are refreshed) or a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import pytest
from fixtures.dicom_helpers import SAMPLE
from fixtures.review_helpers import CLINICIAN, PASSWORD, make_users, tiny_web_settings, triage_reports

from fixtures.orthanc_local import free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium and chromium-driver not installed"),
    pytest.mark.network,
    pytest.mark.slow,
]
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
BURNSCOPE = Path(sys.executable).with_name("burnscope")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """uvicorn serving the review app on the graph's reports of sample_data/; its access log."""
    import uvicorn

    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings
    from burnscope.applications.review.server import create_app
    from burnscope.applications.review.service import ReviewService

    tmp = tmp_path_factory.mktemp("review-browser")
    settings = tiny_web_settings()
    components = build_components(settings)
    out = triage_reports(load_settings(overrides={"inference": {"model_config": "biomedclip-tiny"}}), components, tmp / "out")
    users, tokens, _, _ = make_users(tmp)
    service = ReviewService(settings, out, components=components)
    access = _Collect()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, users, tokens), host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    logging.getLogger("uvicorn.access").addHandler(access)  # after uvicorn configured its logging
    yield f"http://127.0.0.1:{port}", out, access
    server.should_exit = True
    thread.join(timeout=10)
    logging.getLogger("uvicorn.access").removeHandler(access)
    service.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1366,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BURNSCOPE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(driver, folder: Path, name: str) -> Path:
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 4000)")
    driver.set_window_size(1366, max(900, int(height)))
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1366, 900)
    return path


def _wait(driver, condition, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(condition)


def _cli_decide(case: dict, tmp_path: Path) -> dict:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    done = subprocess.run([str(BURNSCOPE), "decide", str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _first_image_uid() -> str:
    entry = next(f for f in MANIFEST["files"] if f["path"].endswith("study-001/IMG-0001.dcm"))
    return entry["sop_instance_uid"]


def test_review_in_a_real_browser(served, browser, shots, tmp_path):
    base, out, access = served
    driver = browser

    # 1. not signed in: the login form (the server answers 401)
    driver.get(base + "/")
    _wait(driver, EC.presence_of_element_located((By.ID, "login-form")))
    assert "Sign in" in driver.title
    _shot(driver, shots, "login")
    driver.find_element(By.ID, "username").send_keys(CLINICIAN[0])
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()

    # 2. worklist: every image of the sample reports, demo banner, review status
    table = _wait(driver, EC.presence_of_element_located((By.ID, "worklist")))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == MANIFEST["expected_images"]
    assert driver.find_element(By.ID, "demo-banner").text.startswith("DEMO MODEL (random weights)")
    assert {r.find_element(By.CSS_SELECTOR, ".status").text.lower() for r in rows} == {"preliminary"}
    hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a.open-image")]
    assert all(h.startswith(base + "/images/") and h.split("/images/")[1].replace(".", "").replace("?frame=", "").isdigit() for h in hrefs)
    _shot(driver, shots, "worklist")

    # 3. image page: the photo, the finding, five probability bars, the backend
    uid = _first_image_uid()
    driver.find_element(By.CSS_SELECTOR, f'tr[data-uid="{uid}"][data-frame="1"] a.open-image').click()
    _wait(driver, EC.presence_of_element_located((By.ID, "finding")))
    report = json.loads((out / "study-001" / "IMG-0001.json").read_text())
    assert driver.find_element(By.ID, "finding-label").text in (report["finding"]["label_display"], "Undetermined — needs clinician review")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#probabilities g.bar")) == len(report["finding"]["probabilities"])
    assert "onnxruntime" in driver.find_element(By.ID, "backend").text
    photo = driver.find_element(By.ID, "photo")
    _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", photo) > 0)
    _wait(driver, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-decided") or 0) >= 1)
    _shot(driver, shots, "image")

    # 4. body chart: two more regions; the page shows what `burnscope decide` gives for the case
    def mark(view: str, region: str, depth: str, fraction: str) -> None:
        before = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-decided") or 0)
        driver.find_element(By.CSS_SELECTOR, f'.figure:not(.hidden) svg[data-view="{view}"] [data-ron="{region}"]').click()
        assert driver.find_element(By.ID, "region-name").get_attribute("data-region") == region
        Select(driver.find_element(By.ID, "region-depth")).select_by_value(depth)
        box = driver.find_element(By.ID, "region-fraction")
        box.clear()
        box.send_keys(fraction)
        driver.find_element(By.ID, "region-apply").click()
        _wait(driver, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-decided") or 0) > before)

    mark("front", "right_leg", "full_thickness", "0.5")
    mark("back", "posterior_trunk", "deep_partial_thickness", "1")
    case = dict(report["case"])
    case["burns"] = list(case["burns"]) + [
        {"region": "right_leg", "depth": "full_thickness", "fraction": 0.5},
        {"region": "posterior_trunk", "depth": "deep_partial_thickness", "fraction": 1.0},
    ]
    expected = _cli_decide(case, tmp_path)
    assert expected["tbsa_percent"] == pytest.approx(36.0)  # 9 (case) + 9 + 18
    shown = float(driver.find_element(By.ID, "tbsa-value").get_attribute("data-value"))
    assert shown == pytest.approx(expected["tbsa_percent"])
    assert driver.find_element(By.ID, "tbsa-value").text == f"{expected['tbsa_percent']:.1f} %"
    for element, key in (("fluid-total", "total_ml_24h"), ("fluid-first8", "first_8h_ml"), ("fluid-rate", "rate_now_ml_per_h")):
        assert float(driver.find_element(By.ID, element).get_attribute("data-value")) == pytest.approx(expected["parkland"][key])
    assert driver.find_element(By.ID, "referral").get_attribute("data-value") == (
        "recommended" if expected["referral"]["recommended"] else "none"
    )
    chart = driver.find_element(By.ID, "body-chart")
    driver.execute_script("arguments[0].scrollIntoView()", chart)
    chart.screenshot(str(shots / "body-chart.png"))

    # 5. verify: correct the finding, sign
    driver.find_element(By.ID, "outcome-modified").click()
    Select(driver.find_element(By.ID, "review-finding")).select_by_value("full_thickness")
    driver.find_element(By.ID, "review-submit").click()
    verified = _wait(driver, EC.presence_of_element_located((By.ID, "verified-by")))
    assert "Anna Smith" in verified.text
    assert driver.find_element(By.ID, "review-status").text.lower() == "verified"
    _shot(driver, shots, "verified")
    driver.get(base + "/")
    row = _wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-uid="{uid}"][data-frame="1"]')))
    assert row.find_element(By.CSS_SELECTOR, ".status").text.lower() == "verified"

    # the child's study opens on the child figure and the Lund–Browder chart of its case
    child = next(f for f in MANIFEST["files"] if f["path"].endswith("study-002/IMG-0001.dcm"))["sop_instance_uid"]
    driver.get(f"{base}/images/{child}?frame=1")
    _wait(driver, lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-decided") or 0) >= 1)
    assert driver.find_element(By.CSS_SELECTOR, ".figure:not(.hidden)").get_attribute("data-figure") == "child"
    assert Select(driver.find_element(By.ID, "method")).first_selected_option.get_attribute("value") == "lund_browder"
    child_case = json.loads((out / "study-002" / "IMG-0001.json").read_text())["case"]
    assert float(driver.find_element(By.ID, "tbsa-value").get_attribute("data-value")) == pytest.approx(
        _cli_decide(child_case, tmp_path)["tbsa_percent"]
    )
    chart = driver.find_element(By.ID, "body-chart")
    driver.execute_script("arguments[0].scrollIntoView()", chart)
    chart.screenshot(str(shots / "body-chart-child.png"))

    # 6. the verified SR on disk: VERIFIED, Anna Smith, the body-chart TBSA, dciodvfy-clean
    sr_path = out / "study-001" / "IMG-0001_review.sr.dcm"
    assert sr_path.is_file()
    sr = pydicom.dcmread(sr_path)
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == CLINICIAN[1]
    record = json.loads((out / "study-001" / "IMG-0001_review.json").read_text())
    assert record["report"]["decision_support"]["tbsa_percent"] == pytest.approx(expected["tbsa_percent"])
    if shutil.which("dciodvfy"):
        done = subprocess.run(["dciodvfy", str(sr_path)], capture_output=True, text=True, timeout=60)
        text = done.stdout + done.stderr
        assert "ComprehensiveSR" in text
        assert not [line for line in text.splitlines() if line.startswith("Error")], text

    # 7. the access log names UIDs, never patients
    log_text = "\n".join(access.lines)
    assert f"/images/{uid}" in log_text
    for patient in MANIFEST["patients"]:
        for value in (patient["name"], patient["patient_id"], patient["name"].split("^")[0]):
            assert value not in log_text
