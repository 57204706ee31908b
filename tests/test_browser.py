"""A person's visit, in a real headless Chromium: open the page, upload, analyze, read the result."""

import shutil

import pytest

from conftest import ARTIFACTS, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_upload_analyze_and_see_labels_and_heatmap(app_url, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect, sync_playwright

    photo = str(ROOT / "examples" / "psoriasis.jpg")
    # what the page must show: the API's answer for the same photo and settings (Markdown stripped)
    _, _, verdict, sentence, _ = Client(app_url, verbose=False).predict(
        handle_file(photo), "Grad-CAM", "Most likely class", 0.45, 3, "fine", api_name="/explain")  # page defaults

    monkeypatch.setenv("HOME", str(tmp_path))  # Chromium writes its profile under $HOME
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(app_url)
        expect(page.locator("#disclaimer")).to_contain_text("not a diagnosis", timeout=30_000)
        expect(page.locator("#model-status")).to_contain_text("tiny-test-model")
        page.locator("#photo input[type=file]").set_input_files(photo)
        page.locator("#analyze").click()
        expect(page.locator("#verdict")).to_contain_text(verdict.replace("**", ""), timeout=60_000)
        expect(page.locator("#faithfulness")).to_contain_text(sentence)
        expect(page.locator("#label")).to_contain_text("%")
        for name in ("Dots", "Rings", "Stripes"):
            expect(page.locator("#label")).to_contain_text(name)
        heatmap = page.locator("#heatmap img")
        expect(heatmap).to_be_visible(timeout=30_000)
        assert heatmap.evaluate("img => img.naturalWidth") == 512
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_result.png"), full_page=True)

        page.get_by_text("Compare methods").first.click()  # open the accordion
        page.locator("#compare").click()
        expect(page.locator("#compare-gallery img")).to_have_count(7, timeout=60_000)
        for method in ("Grad-CAM", "Grad-CAM++", "Score-CAM", "LayerCAM"):
            expect(page.locator("#compare-table")).to_contain_text(method)
        page.screenshot(path=str(ARTIFACTS / "browser_compare.png"), full_page=True)

        damaged = tmp_path / "damaged.jpg"
        damaged.write_bytes((ROOT / "examples" / "astronaut-face.jpg").read_bytes()[:5000])
        page.locator("#photo input[type=file]").set_input_files(str(damaged))
        page.locator("#analyze").click()
        expect(page.get_by_text("damaged or truncated").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "browser_bad_upload.png"), full_page=True)
        browser.close()
