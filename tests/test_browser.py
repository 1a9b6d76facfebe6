"""The app in a real browser (Debian Chromium, headless, via Selenium): every tab answers, streams, takes a
rating and a correction, and the row lands in the database; examples show and fill the inputs; nothing looks
busy when idle; the feedback area says what it did; the narrow tab bar shows the open tab; admin tools stay
hidden until the token is entered. Screenshots of every tab at both widths go to artifacts/screenshots/."""
import re
import time
from pathlib import Path

import pytest

from tasks import REGISTRY
from tests.conftest import ADMIN_TOKEN

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
WIDE, NARROW = (1400, 1000), (420, 900)
# What Gradio shows while an event runs: a faded block with a spinner, an ETA bar and a running timer
BUSY = ".wrap.pending, .eta-bar, .progress-text"


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
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, read by _console_errors
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def chatty_models(monkeypatch):
    """Random tiny models may stop at once and decode in milliseconds: without stop tokens, and paced like a
    real model (50 ms a token), every answer has visible text that streams."""
    from runtime.lm import OnnxCausalLM
    from runtime.models import Backend

    monkeypatch.setattr(OnnxCausalLM, "stop_ids", property(lambda self: set()))

    def paced(self, ids, sampling):  # the model's own token loop (the batching loop caches its stop tokens)
        for tok in self.model.stream(ids, sampling):
            time.sleep(0.05)
            yield tok

    monkeypatch.setattr(Backend, "stream", paced)


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
                             if b.text.strip() == title and b.is_displayed()), what=f"tab {title}")
    tab.click()
    return tab


def _panel(driver):
    from selenium.webdriver.common.by import By

    return _wait(lambda: next(p for p in driver.find_elements(By.CSS_SELECTOR, "[role='tabpanel']")
                              if p.is_displayed()), what="tab panel")


def _console_errors(driver) -> list[str]:
    """SEVERE entries of the browser console since the last call (reading the log empties it)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _open_page(driver, url, size=WIDE):
    driver.set_window_size(*size)
    driver.get(url)
    _wait(lambda: driver.find_elements("css selector", "button[role='tab']"), what="page")
    _console_errors(driver)


def _examples(panel):
    from selenium.webdriver.common.by import By

    return [e for e in panel.find_elements(By.CSS_SELECTOR, ".gallery-item, tr.tr-body") if e.is_displayed()]


def _control_value(driver, task, control):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{task.name}-{control.name} input"
                                               + ("" if control.choices else "[type='number']"))
    value = box.get_attribute("value")
    return value if control.choices else float(value)


def _answered(driver, name):
    """Wait for the answer's id to reach the page (it comes with the last step, after the row is stored)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{name}-answer-id textarea")
    _wait(lambda: box.get_attribute("value"), what=f"{name} answer id on the page")


def _is_primary(button) -> bool:
    return "primary" in button.get_attribute("class").split()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_tab_answers_streams_and_takes_feedback(browser, app_server, chatty_models, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    task = REGISTRY[name]
    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, task.title)
    # use an example: click the first example of this tab
    example = _wait(lambda: _examples(_panel(d))[0], what="example")
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
            # no stop token and a 24-token server cap: the answer is cut, and the page says so
            _wait(lambda: "cut at 24 tokens" in d.find_element(By.CSS_SELECTOR, f"#{name}-notice").text,
                  what="truncation notice")
        if name == "qa":  # whoever reads the answer can check it at its source
            _wait(lambda: "help article" in d.find_element(By.CSS_SELECTOR, "#qa-notice").text.lower(),
                  what="the help article the answer was given")
    else:
        _wait(lambda: any(l in d.find_element(By.CSS_SELECTOR, f"#{name}-output").text for l in task.labels),
              what="predicted label shown")
        _wait(lambda: app_server.store.count()[0] > before, what="answer recorded")

    _answered(d, name)
    up = d.find_element(By.CSS_SELECTOR, f"#{name}-up")
    up.click()
    ack = d.find_element(By.CSS_SELECTOR, f"#{name}-ack")
    _wait(lambda: ack.text.strip() == "👍 saved", what="rating acknowledged")
    _wait(lambda: _is_primary(up), what="the chosen thumb highlighted")
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
    _wait(lambda: ack.text.strip() == "Correction and comment saved", what="correction ack")
    _wait(lambda: [r for r in app_server.store.export_rows(task=name) if r["comment"] == "from the browser test"],
          what="feedback row in the database")
    rows = [r for r in app_server.store.export_rows(task=name) if r["comment"] == "from the browser test"]
    assert rows[-1]["rating"] == 1 and rows[-1]["correction"] == correction
    if task.kind == "generate":  # what the user typed is text on the page, never markup
        assert not d.find_elements(By.XPATH, "//b[text()='not bold']")
    assert not _console_errors(d)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_examples_show_and_fill_every_input(browser, app_server, name):
    """Each example is a readable, clickable item; a click fills the text and every control; the console stays
    clean. (Gradio 6.17 drew the examples of every tab but the first as empty 2x2 px buttons, with a
    TypeError per example in the console.)"""
    from selenium.webdriver.common.by import By

    task = REGISTRY[name]
    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, task.title)
    items = _wait(lambda: len(_examples(_panel(d))) == len(task.examples) and _examples(_panel(d)),
                  what=f"{len(task.examples)} examples")
    for item, example in zip(items, task.examples):
        size = item.size
        assert size["width"] > 20 and size["height"] > 10, f"example drawn {size['width']}x{size['height']} px"
        assert " ".join(example[0].split())[:20] in item.text, f"example text not readable: {item.text!r}"
    box = d.find_element(By.CSS_SELECTOR, f"#{name}-input textarea")
    for i, example in enumerate(task.examples):
        _examples(_panel(d))[i].click()
        _wait(lambda: box.get_attribute("value") == example[0], what=f"example {i} text in the input")
        for control, value in zip(task.controls, example[1:]):
            _wait(lambda: _control_value(d, task, control) == value, what=f"example {i} {control.name} = {value}")
    assert not _console_errors(d)


def test_a_chosen_style_brings_its_max_tokens(browser, app_server):
    """A poem needs ~150 tokens: picking its style by hand sets max tokens as its example does."""
    from selenium.webdriver.common.by import By

    task = REGISTRY["generate"]
    poem = next(e for e in task.examples if e[1] == "poem (zh)")
    tokens = next(c for c in task.controls if c.name == "max_new_tokens")
    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, task.title)
    assert _control_value(d, task, tokens) == tokens.default != poem[4]
    d.find_element(By.CSS_SELECTOR, "#generate-style input").click()
    _wait(lambda: next(o for o in d.find_elements(By.CSS_SELECTOR, "#generate-style [role='option']")
                       if o.text.strip() == "poem (zh)"), what="style options").click()
    _wait(lambda: _control_value(d, task, task.controls[0]) == "poem (zh)", what="poem style chosen")
    _wait(lambda: _control_value(d, task, tokens) == poem[4], what="max tokens of the poem example")


def test_nothing_looks_busy_when_idle(browser, app_server):
    """Footers and the About page are filled on load: no spinner, faded block or running timer anywhere."""
    from selenium.webdriver.common.by import By

    d = browser
    _open_page(d, app_server.url)
    time.sleep(4)
    titles = [b.text.strip() for b in d.find_elements(By.CSS_SELECTOR, "button[role='tab']")]
    assert "About the models" in titles
    for title in titles:
        _open_tab(d, title)
        time.sleep(1.5)
        busy = [e for e in d.find_elements(By.CSS_SELECTOR, BUSY) if e.is_displayed()]
        assert not busy, f"{title}: {len(busy)} busy indicators while nothing runs"
        if title in {t.title for t in REGISTRY.values()}:
            assert "Runs on" in _panel(d).find_element(By.CSS_SELECTOR, ".model-footer").text
    _open_tab(d, "About the models")
    about = d.find_element(By.CSS_SELECTOR, "#about-models")
    for task in REGISTRY.values():
        assert task.title in about.text
    for jargon in ("MISSED", "macro_f1", "chrF", "rougeL", "adapters/"):
        assert jargon not in about.text
    assert about.find_elements(By.LINK_TEXT, "Model card")
    assert not _console_errors(d)


@pytest.mark.parametrize("name", ["generate", "sentiment"])
def test_feedback_area_says_what_it_did(browser, app_server, name):
    """Each action has its own acknowledgement; the chosen thumb stays highlighted; an error replaces the last
    acknowledgement; a new answer and Clear reset the feedback area."""
    from selenium.webdriver.common.by import By

    task = REGISTRY[name]
    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, task.title)
    find = lambda what: d.find_element(By.CSS_SELECTOR, f"#{name}-{what}")  # noqa: E731
    ack_text = lambda: find("ack").text.strip()  # noqa: E731
    find("up").click()  # nothing to rate yet
    _wait(lambda: ack_text().startswith("⚠️") and "saved" not in ack_text(), what="no-answer warning")

    def answer(text):
        before = app_server.store.count()[0]
        box = find("input").find_element(By.CSS_SELECTOR, "textarea")
        box.clear()
        box.send_keys(text)
        find("submit").click()
        _wait(lambda: app_server.store.count()[0] > before, what="answer recorded")
        _answered(d, name)

    answer("A fine day for a walk")
    find("up").click()
    _wait(lambda: ack_text() == "👍 saved", what="👍 saved")
    find("down").click()
    _wait(lambda: ack_text() == "👎 saved (replaces your 👍)", what="👎 saved")
    _wait(lambda: _is_primary(find("down")) and not _is_primary(find("up")), what="👎 highlighted, 👍 not")
    find("send").click()  # an empty correction: the error replaces the last acknowledgement
    _wait(lambda: ack_text().startswith("⚠️") and "saved" not in ack_text(), what="empty-correction warning")
    comment = find("comment").find_element(By.CSS_SELECTOR, "textarea")
    comment.send_keys("just a comment")
    find("send").click()
    _wait(lambda: ack_text() == "Comment saved", what="Comment saved")

    def reset():
        return (ack_text() == "" and comment.get_attribute("value") == ""
                and not _is_primary(find("up")) and not _is_primary(find("down")))

    answer("Another day, another walk")  # a new answer: a fresh feedback area
    _wait(reset, what="feedback area reset by a new answer")
    find("up").click()
    _wait(lambda: ack_text() == "👍 saved" and _is_primary(find("up")), what="👍 on the new answer")
    find("clear").click()
    _wait(reset, what="feedback area reset by Clear")
    _wait(lambda: find("input").find_element(By.CSS_SELECTOR, "textarea").get_attribute("value") == "",
          what="input cleared")
    assert not _console_errors(d)


def test_my_feedback_opens_with_tab_titles_and_times(browser, app_server, chatty_models):
    from selenium.webdriver.common.by import By

    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, "Sentiment")
    before = app_server.store.count()[0]
    d.find_element(By.CSS_SELECTOR, "#sentiment-input textarea").send_keys("Loved every minute")
    d.find_element(By.CSS_SELECTOR, "#sentiment-submit").click()
    _wait(lambda: app_server.store.count()[0] > before, what="answer recorded")
    _answered(d, "sentiment")
    d.find_element(By.CSS_SELECTOR, "#sentiment-up").click()
    _wait(lambda: d.find_element(By.CSS_SELECTOR, "#sentiment-ack").text.strip() == "👍 saved", what="rated")
    _open_tab(d, "My feedback")  # opening the tab loads it: no button to press
    table = d.find_element(By.CSS_SELECTOR, "#my-feedback-table")
    _wait(lambda: "Loved every minute" in table.text, what="own feedback listed")
    assert "Sentiment" in table.text and "sentiment" not in table.text.replace("Sentiment", "")
    stamp = table.find_element(By.CSS_SELECTOR, "time")
    # written in UTC by the server, rewritten in the browser's own time zone by the page
    assert stamp.get_attribute("datetime") and stamp.text and "UTC" not in stamp.text
    assert stamp.get_attribute("datetime")[:4] in stamp.text and not re.search(r"\d-\d\dT\d", stamp.text)
    width = d.execute_script("return window.innerWidth")
    assert table.size["width"] <= width  # every column on screen at 1400 px
    assert not _console_errors(d)


def test_admin_tools_appear_only_with_the_token(browser, app_server):
    from selenium.webdriver.common.by import By

    d = browser
    _open_page(d, app_server.url)
    _open_tab(d, "Customer service")
    time.sleep(1)
    assert not [e for e in d.find_elements(By.CSS_SELECTOR, "#qa-upload") if e.is_displayed()]
    _open_tab(d, "Admin")
    time.sleep(1)
    assert not [e for e in d.find_elements(By.CSS_SELECTOR, "#admin-tools") if e.is_displayed()]
    token = d.find_element(By.CSS_SELECTOR, "#admin-token input")
    token.send_keys("wrong")
    d.find_element(By.CSS_SELECTOR, "#admin-unlock").click()
    _wait(lambda: "Wrong admin token" in d.find_element(By.CSS_SELECTOR, "#admin-status").text, what="refused")
    assert not [e for e in d.find_elements(By.CSS_SELECTOR, "#admin-tools") if e.is_displayed()]
    d.refresh()
    _wait(lambda: d.find_elements(By.CSS_SELECTOR, "button[role='tab']"), what="page")
    _open_tab(d, "Admin")
    d.find_element(By.CSS_SELECTOR, "#admin-token input").send_keys(ADMIN_TOKEN)
    d.find_element(By.CSS_SELECTOR, "#admin-unlock").click()
    status = lambda: d.find_element(By.CSS_SELECTOR, "#admin-status").text  # noqa: E731
    shown = lambda: [e for e in d.find_elements(By.CSS_SELECTOR, "#admin-tools") if e.is_displayed()]  # noqa: E731
    _wait(lambda: shown() or "wait" in status(), what="admin tools shown or the back-off")
    for _ in range(3):  # the wrong token above started the per-address back-off: the page says how long
        if shown():
            break
        waited = re.search(r"wait (\d+) s", status())
        time.sleep(float(waited.group(1)) + 0.3 if waited else 1.0)
        d.find_element(By.CSS_SELECTOR, "#admin-unlock").click()
        try:
            _wait(shown, timeout=10, what="admin tools shown")
        except AssertionError:
            pass
    assert shown(), f"admin tools not shown; the page says {status()!r}"
    label = [e for e in d.find_elements(By.XPATH, "//*[contains(text(), 'Questions handed over to a person')]")
             if e.is_displayed()]
    assert label, "the follow-up list's accordion is not on the page"
    label[0].click()
    _wait(lambda: d.find_element(By.CSS_SELECTOR, "#admin-follow-up-show").is_displayed(), what="follow-up button")
    d.find_element(By.CSS_SELECTOR, "#admin-follow-up-show").click()
    follow = lambda: d.find_element(By.CSS_SELECTOR, "#admin-follow-up").text  # noqa: E731
    _wait(lambda: "Answer id" in follow() or "No handed-over questions" in follow(), what="the follow-up list")
    _open_tab(d, "Customer service")
    _wait(lambda: [e for e in d.find_elements(By.CSS_SELECTOR, "#qa-upload") if e.is_displayed()],
          what="knowledge-base upload shown")
    assert ADMIN_TOKEN not in d.page_source
    assert not _console_errors(d)


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["wide", "narrow"])
def test_every_tab_screenshot_and_the_open_tab_shows(browser, app_server, size):
    """Each tab opened at 1400x1000 and 420x900: its button is in the tab bar and on screen (at 420 px the bar
    used to show "Text generation" and "⋯" whatever was open); a screenshot of each goes to artifacts/."""
    from selenium.webdriver.common.by import By

    d = browser
    _open_page(d, app_server.url, size)
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = d.execute_script("return window.innerWidth")
    titles = [t.title for t in REGISTRY.values()] + ["About the models", "My feedback", "Admin"]
    for title in titles:
        tab = _open_tab(d, title)
        _wait(lambda: tab.get_attribute("aria-selected") == "true", what=f"{title} selected")
        r = d.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.right, r.top];", tab)
        assert 0 <= r[0] and r[1] <= width, f"{title}: tab button off screen ({r}) at {width} px"
        time.sleep(1)
        d.save_screenshot(str(SHOTS / f"{title.lower().replace(' ', '-')}-{size[0]}.png"))
    assert not [e for e in d.find_elements(By.CSS_SELECTOR, ".overflow-menu") if e.is_displayed()]
    assert not _console_errors(d)


def test_no_secret_on_the_page(browser, app_server):
    _open_page(browser, app_server.url)
    _wait(lambda: "Small-GPT" in browser.page_source, what="page")
    assert ADMIN_TOKEN not in browser.page_source  # the admin token is only ever compared server-side
