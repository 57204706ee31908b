"""A person's visit, in a real headless Chromium: open the page, upload, analyze, read the result."""

import shutil
import time
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT, launch_app
from PIL import Image

from explain.model import EXAMPLES_FOLDER
from explain.page import HEADLINES
from explain.verdicts import NOT_SKIN

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


NEEDS_CHROMIUM = pytest.mark.skipif(not shutil.which("chromium"),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")
HEADLINE = "#label [data-testid=label-output-value]"  # the result box's big type
SWEEP = {"SKIN_CACHE_SWEEP": "1", "SKIN_CACHE_MAX_AGE": "2"}  # the sweeper's ages, shortened to seconds


def open_browser(p, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # Chromium writes its profile under $HOME
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"])


NOT_SKIN_EXAMPLE = "Flat colour not skin"  # the name under the example the tiny model calls not skin


def model_with_a_not_skin_example(tiny_model_dir, classifier, folder: Path) -> Path:
    """A copy of the tiny model whose examples/ adds a flat colour it calls "not skin". The tiny model
    has seen only generated skin, so where its threshold falls among real photos (the coffee cup
    included) varies with the CPU that trained it; a flat colour is far below it on every machine seen."""
    shutil.copytree(tiny_model_dir, folder)
    colours = [Image.new("RGB", (320, 240), colour) for colour in ((255, 255, 255), (0, 0, 0), (128, 128, 128))]
    farthest = min(colours, key=lambda image: classifier.predict(image).abstain_score)
    assert classifier.predict(farthest).verdict == NOT_SKIN, "the tiny model calls no flat colour 'not skin'"
    (folder / EXAMPLES_FOLDER).mkdir(exist_ok=True)
    farthest.save(folder / EXAMPLES_FOLDER / f"{NOT_SKIN_EXAMPLE.lower().replace(' ', '-')}.png")
    return folder


@pytest.fixture
def swept_app(tiny_model_dir, classifier, tmp_path):
    """The app with its temp-file sweeper running every second on files older than two."""
    log = tmp_path / "swept_app.log"
    model = model_with_a_not_skin_example(tiny_model_dir, classifier, tmp_path / "model")
    process, url = launch_app({"SKIN_MODEL_DIR": str(model), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
                               **SWEEP}, log)
    yield url, log
    process.terminate()
    process.wait(timeout=30)


def shown(page) -> tuple[str, str]:
    """The verdict line and the result box's headline, once an answer is on the page."""
    page.locator("#heatmap img").wait_for(timeout=60_000)
    return page.locator("#verdict").inner_text(), page.locator(HEADLINE).inner_text()


@NEEDS_CHROMIUM
def test_examples_work_after_the_sweep_and_an_expired_upload_is_told_plainly(swept_app, tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    url, log = swept_app
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = open_browser(p, tmp_path, monkeypatch)
        for width in (1280, 390):
            height = 1100 if width > 400 else 844
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            disclaimer = page.locator("#disclaimer")
            expect(disclaimer).to_contain_text("not a diagnosis", timeout=30_000)
            # the disclaimer leaves room for the photo on the first screen; the rest is one tap away
            assert page.locator("#photo").bounding_box()["y"] < height / 2
            page.get_by_text("What this demo can and cannot do").click()
            expect(page.locator("#disclaimer-more")).to_contain_text("diagnosis")
            examples = page.locator("#examples button.thumbnail-item")
            expect(examples).to_have_count(15)  # every example on one page (the model's own too), each named
            assert all(box["y"] >= 0 for box in (examples.nth(i).bounding_box() for i in range(15)))
            assert all(e.evaluate("b => b.getBoundingClientRect().right <= window.innerWidth")
                       for e in examples.all())  # none hidden off the side
            example = lambda name: examples.filter(has=page.get_by_text(name, exact=True))
            headline = page.locator(HEADLINE)
            example("Psoriasis").click()
            at_start = shown(page)
            assert at_start[0].startswith("Most likely") and at_start[1] in ("Dots", "Rings", "Stripes")
            time.sleep(4)  # the sweeper has run several times on files older than the photo's copy
            example(NOT_SKIN_EXAMPLE).click()
            expect(page.locator("#verdict")).not_to_have_text(at_start[0], timeout=60_000)
            expect(headline).not_to_have_text(at_start[1], timeout=60_000)  # the result box has followed
            no_verdict, no_headline = shown(page)
            # not an answer, so the big type says so and is no class name
            assert not no_verdict.startswith("Most likely") and no_headline == HEADLINES[NOT_SKIN]
            title = page.locator("#label [data-testid=block-label]").bounding_box()
            assert headline.bounding_box()["y"] >= title["y"] + title["height"]  # not written under the box's title
            page.screenshot(path=str(ARTIFACTS / f"browser_example_not_skin_{width}px.png"), full_page=True)
            example("Psoriasis").click()
            expect(page.locator("#verdict")).to_have_text(at_start[0], timeout=60_000)
            expect(headline).to_have_text(at_start[1], timeout=60_000)  # the same answer as at start
            assert page.locator("#heatmap img").evaluate("img => img.naturalWidth") == 512
            page.screenshot(path=str(ARTIFACTS / f"browser_example_{width}px.png"), full_page=True)
            page.get_by_text("Compare methods").first.click()
            page.locator("#compare").click()
            maps = page.locator("#compare-gallery img")
            expect(maps).to_have_count(7, timeout=60_000)
            for caption in page.locator("#compare-gallery .caption-label").all():  # whole, not cut off
                assert caption.evaluate("c => c.scrollWidth <= c.clientWidth + 1"), caption.inner_text()
            assert all(m.evaluate("m => m.getBoundingClientRect().right <= window.innerWidth") for m in maps.all())
            page.screenshot(path=str(ARTIFACTS / f"browser_compare_{width}px.png"), full_page=True)
            page.close()

        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url)
        upload = tmp_path / "jane-doe-back-mole.jpg"
        upload.write_bytes((ROOT / "examples" / "psoriasis.jpg").read_bytes() + b"\0")  # not an example's bytes
        page.locator("#photo input[type=file]").set_input_files(str(upload))
        page.locator("#photo img").wait_for(timeout=30_000)
        time.sleep(4)  # the upload has been swept
        page.locator("#analyze").click()
        expect(page.get_by_text("This photo is no longer on the server: please upload it again.").first).to_be_visible(
            timeout=30_000)
        assert "gradio" not in page.locator("body").inner_text()  # no server path shown
        browser.close()
    text = log.read_text(encoding="utf-8")
    assert "jane-doe" not in text and text.count("Refused: This photo is no longer on the server") == 1
    assert "Traceback" not in text


@NEEDS_CHROMIUM
def test_upload_analyze_and_see_labels_and_heatmap(app_url, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect, sync_playwright

    photo = str(ROOT / "examples" / "psoriasis.jpg")
    # what the page must show: the API's answer for the same photo and settings (Markdown stripped)
    _, _, verdict, sentence, _ = Client(app_url, verbose=False).predict(
        handle_file(photo), "Grad-CAM", "Most likely class", 0.45, 3, "fine", api_name="/explain")  # page defaults

    with sync_playwright() as p:
        browser = open_browser(p, tmp_path, monkeypatch)
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
