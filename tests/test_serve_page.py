"""serve's web page in a real browser: headless Chromium, driven by Playwright, types a
sentence and uploads an image, and reads the answer from the page as a person would."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from serving import Server
from test_cli_end_to_end import cli

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs "
                               "playwright (pip install -e '.[dev]')")
CHROMIUM = os.environ.get("TORCHSTARTER_CHROMIUM") or next(
    (path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
     if path), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium, or set "
                             "TORCHSTARTER_CHROMIUM to a Chrome/Chromium binary); .ci/run "
                             "installs it")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: the sandbox needs user namespaces that containers and root lack
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_a_typed_sentence_shows_its_entities_highlighted_with_probabilities(shipped,
                                                                            browser):
    model = shipped("ner")
    sentence = "John Smith visited Paris and Berlin on Monday ."
    expected = json.loads(cli("predict", "--model-dir", model.model_dir, "--json",
                              sentence).stdout)[0]
    with Server(model.model_dir) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=yes]")
        assert page.is_visible("#sentence") and not page.is_visible("#file")
        page.fill("#sentence", sentence)
        page.click("#tag")
        page.wait_for_selector("#tokens")
        tokens = page.locator(".tok")
        shown = [tokens.nth(i).inner_text().split("\n") for i in range(tokens.count())]
        assert [s[0] for s in shown] == expected["tokens"]
        assert [s[1].split()[0] for s in shown] == expected["tags"]
        assert [s[1].split()[1] for s in shown] == \
            [f"{100 * p:.0f}%" for p in expected["probabilities"]]
        marks = page.locator("mark.entity")
        assert [marks.nth(i).get_attribute("data-type") for i in range(marks.count())] == \
            [e["type"] for e in expected["entities"]]
        page.fill("#sentence", "   ")
        page.click("#tag")
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error").startswith("error 400: sentence 0: has no tokens")
        page.close()


def test_an_uploaded_image_shows_its_class_and_probabilities(shipped, browser, tmp_path):
    model = shipped("images")
    image = sorted((model.raw_dir / "test").rglob("*.png"))[3]
    expected = json.loads(cli("predict", "--model-dir", model.model_dir, "--json",
                              image).stdout)[0]
    with Server(model.model_dir) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=yes]")
        assert page.is_visible("#drop") and not page.is_visible("#sentence")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#label")
        assert page.inner_text("#label") == str(expected["label"])
        bars = page.locator(".bar")
        shown = {bars.nth(i).get_attribute("data-label"):
                 bars.nth(i).locator(".prob").inner_text() for i in range(bars.count())}
        assert shown == {name: f"{100 * p:.1f}%"
                         for name, p in expected["probabilities"].items()}
        text = tmp_path / "notes.png"
        text.write_text("not an image")
        page.set_input_files("#file", str(text))
        page.wait_for_selector("#error:not([hidden])")
        assert "not a readable image" in page.inner_text("#error")
        page.close()
