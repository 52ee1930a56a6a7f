"""``refseg app`` in a real browser: headless Debian Chromium driven by Selenium.

Starts the app on 127.0.0.1 (a free port) in this process, checks that the model dropdown shows the
bundled demo model, uploads a synthetic scene, types a sentence, presses Segment and waits for the
verdict, the instance table and the overlay. Skips, saying why, when
Gradio, Selenium, Chromium or chromedriver is missing (``scripts/test.sh`` installs them where it can).
Set ``REFSEG_APP_SCREENSHOT=docs/images/app.png`` to keep a screenshot of the answered page.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("REFSEG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("REFSEG_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)
PAGE_TIMEOUT_S = 90  # page load and model answer, each
SENTENCE = "all red shapes"


def _require(module: str, why: str):
    try:
        return __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed ({why}); pip install -e '.[test,app]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    _require("gradio", "the app needs it")
    from refseg.app.blocks import build_app, launch_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_app()
    port = _free_port()
    launch_app(app, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    _require("selenium", "the browser test drives Chromium with it")
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.skip(f"{name} not found at {path} (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture()
def scene_png(tmp_path):
    from refseg.data import synthetic_scenes

    row = synthetic_scenes(num_images=1, seed=4, image_size=160, sentences_per_image=1)[0]
    path = tmp_path / "scene.png"
    row["image"].convert("RGB").save(path)
    return path


def test_upload_type_segment_and_see_the_answer(app_url, browser, scene_png):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from refseg.app.inference import DEMO_MODEL

    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)
    browser.get(app_url)
    model = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#model input")))
    assert model.get_attribute("value") == DEMO_MODEL  # a dropdown of the configured models only
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image input[type=file]")))
    upload.send_keys(str(scene_png))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image img")))  # the preview
    sentence = browser.find_element(By.CSS_SELECTOR, "#sentence textarea")
    sentence.send_keys(SENTENCE)
    browser.find_element(By.CSS_SELECTOR, "#segment").click()

    def answered(driver):
        text = driver.find_element(By.ID, "verdict").text
        return text if ("Target found" in text or "No target" in text) else False

    verdict = wait.until(answered)
    assert "p(target) =" in verdict
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#overlay img")))
    table = browser.find_element(By.ID, "instances").text
    for column in ("score", "xmin", "ymin", "xmax", "ymax"):
        assert column in table
    n = int(verdict.split("Target found:")[1].split("instance")[0]) if "Target found" in verdict else 0

    def table_rows(driver):  # the grid's aria-rowcount counts the header row too
        count = driver.find_element(By.CSS_SELECTOR, "#instances [role=grid]").get_attribute("aria-rowcount")
        return int(count) - 1 if count is not None and int(count) - 1 == n else False

    if n:
        assert wait.until(table_rows) == n  # one row per instance of the verdict
    else:  # no target: no numbers below the header
        assert not any(c.isdigit() for c in table.split("ymax", 1)[1])
    shot = os.environ.get("REFSEG_APP_SCREENSHOT")
    if shot:
        time.sleep(1.0)  # let the overlay finish rendering
        browser.save_screenshot(shot)
