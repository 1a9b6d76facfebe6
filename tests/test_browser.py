"""The app in a real browser (Debian Chromium, headless, via Selenium): every tab answers, streams, takes a
rating and a correction, and the row lands in the database. Screenshots go to artifacts/screenshots/."""
import time
from pathlib import Path

import pytest

from tasks import REGISTRY
from tests.conftest import ADMIN_TOKEN

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("Debian chromium and chromium-driver are not installed: scripts/test.sh installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def chatty_models(monkeypatch):
    """Random tiny models may stop at once and decode in milliseconds: without stop tokens, and paced like a
    real model (50 ms a token), every answer has visible text that streams."""
    from runtime.lm import OnnxCausalLM

    monkeypatch.setattr(OnnxCausalLM, "stop_ids", property(lambda self: set()))
    real_stream = OnnxCausalLM.stream

    def paced(self, *a, **k):
        for tok in real_stream(self, *a, **k):
            time.sleep(0.05)
            yield tok

    monkeypatch.setattr(OnnxCausalLM, "stream", paced)


def _wait(fn, timeout=60, every=0.2, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - element not there yet
            pass
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _open_tab(driver, title):
    from selenium.webdriver.common.by import By

    tab = _wait(lambda: next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']")
                             if b.text.strip() == title), what=f"tab {title}")
    tab.click()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_tab_answers_streams_and_takes_feedback(browser, app_server, chatty_models, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    task = REGISTRY[name]
    d = browser
    d.get(app_server.url)
    _open_tab(d, task.title)
    # use an example: click the first example row of this tab
    panel = _wait(lambda: next(p for p in d.find_elements(By.CSS_SELECTOR, "[role='tabpanel']") if p.is_displayed()),
                  what="tab panel")
    example = _wait(lambda: [e for e in panel.find_elements(By.CSS_SELECTOR, ".gallery-item, tr.tr-body td, "
                                                                               "button.gallery-item")
                             if e.is_displayed()][0], what="example")
    example.click()
    box = d.find_element(By.CSS_SELECTOR, f"#{name}-input textarea")
    _wait(lambda: box.get_attribute("value") == task.examples[0][0], what="example text in the input")
    before = app_server.store.count()[0]
    d.find_element(By.CSS_SELECTOR, f"#{name}-submit").click()

    if task.kind == "generate":  # the answer streams in: we see it grow before it is final
        out = d.find_element(By.CSS_SELECTOR, f"#{name}-output textarea")
        seen = []

        def recorded():
            value = out.get_attribute("value")
            if not seen or seen[-1] != value:
                seen.append(value)
            return app_server.store.count()[0] > before

        _wait(recorded, every=0.03, what="answer recorded")
        # A random tiny model writes junk: what matters is that the text only ever grows into the answer.
        # The generation tab (nothing cut, no early stop) must show it growing step by step; the others may
        # stop at once when the junk starts with the cut (a summary's newline).
        grew = [v for v in seen if v]
        assert all(b.startswith(a) for a, b in zip(grew, grew[1:])), f"streamed text was rewritten: {seen}"
        if name == "generate":
            assert len(grew) >= 2, f"no streaming: {seen}"
    else:
        _wait(lambda: any(l in d.find_element(By.CSS_SELECTOR, f"#{name}-output").text for l in task.labels),
              what="predicted label shown")
        _wait(lambda: app_server.store.count()[0] > before, what="answer recorded")

    d.find_element(By.CSS_SELECTOR, f"#{name}-up").click()
    ack = d.find_element(By.CSS_SELECTOR, f"#{name}-ack")
    _wait(lambda: "saved" in ack.text, what="rating acknowledged")
    if task.kind == "classify":
        field = d.find_element(By.CSS_SELECTOR, f"#{name}-correction input")
        field.click()
        field.send_keys(task.labels[0])
        field.send_keys(Keys.ENTER)
        correction = task.labels[0]
    else:
        field = d.find_element(By.CSS_SELECTOR, f"#{name}-correction textarea")
        correction = f"A better answer for {name} <b>not bold</b>"
        field.send_keys(correction)
    d.find_element(By.CSS_SELECTOR, f"#{name}-comment textarea").send_keys("from the browser test")
    d.find_element(By.CSS_SELECTOR, f"#{name}-send").click()
    _wait(lambda: "saved" in ack.text and d.find_element(By.CSS_SELECTOR, f"#{name}-ack").text, what="correction ack")
    _wait(lambda: [r for r in app_server.store.export_rows(task=name) if r["comment"] == "from the browser test"],
          what="feedback row in the database")
    rows = [r for r in app_server.store.export_rows(task=name) if r["comment"] == "from the browser test"]
    assert rows[-1]["rating"] == 1 and rows[-1]["correction"] == correction
    if task.kind == "generate":  # what the user typed is text on the page, never markup
        assert not d.find_elements(By.XPATH, "//b[text()='not bold']")
    SHOTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(SHOTS / f"{name}.png"))


def test_no_secret_on_the_page(browser, app_server):
    browser.get(app_server.url)
    _wait(lambda: "Small-GPT" in browser.page_source, what="page")
    assert ADMIN_TOKEN not in browser.page_source  # the admin token is only ever compared server-side
