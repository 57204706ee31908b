"""A person's visit, in a real headless Chromium: open the page, upload, analyze, read the result."""

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT, launch_app
from PIL import Image

from explain.model import EXAMPLES_FOLDER
from explain.verdicts import NOT_SKIN, VERDICTS

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


def model_with_a_not_skin_example(tiny_model_dir, classifier, folder: Path) -> tuple[Path, str, str]:
    """A copy of the tiny model with a flat colour in its examples/ and its skin threshold set between
    the two lowest skin scores of the examples shelf, so that exactly one example is told "not a photo
    of skin". The tiny model's backbone is trained from scratch on three generated shapes and never
    learned colour, so its own read-out calls nothing "not skin" (the read-out's quality is tested on
    the shipped model); this test is about how the page shows each verdict. Returns the folder, the
    name of the example told "not skin" and of one that is answered."""
    from explain.classifier import Classifier
    from explain.images import load_photo
    from explain.model import ModelSource, load_model_folder
    from explain.service import example_name
    from explain.verdicts import ANSWER, SHORTLIST

    shutil.copytree(tiny_model_dir, folder)
    (folder / EXAMPLES_FOLDER).mkdir(exist_ok=True)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(folder / EXAMPLES_FOLDER / "flat-colour.png")
    shelf = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".jpg", ".png"))
    shelf.append(folder / EXAMPLES_FOLDER / "flat-colour.png")
    skin = {path: classifier.predict(load_photo(path, 10**8, 10**8)).scores["skin"] for path in shelf}
    lowest, next_lowest = sorted(skin.values())[:2]
    config = json.loads((folder / "config.json").read_text())
    config["thresholds"]["skin"] = (lowest + next_lowest) / 2
    (folder / "config.json").write_text(json.dumps(config))
    copy = Classifier(load_model_folder(folder, ModelSource("folder", str(folder))))
    verdict = {path: copy.predict(load_photo(path, 10**8, 10**8)).verdict for path in shelf}
    not_skin = [path for path, v in verdict.items() if v == NOT_SKIN]
    answered = [path for path, v in verdict.items() if v in (ANSWER, SHORTLIST)]  # the verdict names classes
    assert len(not_skin) == 1 and answered, verdict
    return folder, example_name(str(not_skin[0])), example_name(str(answered[0]))


@pytest.fixture
def swept_app(tiny_model_dir, classifier, tmp_path):
    """The app with its temp-file sweeper running every second on files older than two."""
    log = tmp_path / "swept_app.log"
    model, not_skin, answered = model_with_a_not_skin_example(tiny_model_dir, classifier, tmp_path / "model")
    process, url = launch_app({"SKIN_MODEL_DIR": str(model), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
                               **SWEEP}, log)
    yield url, log, not_skin, answered
    process.terminate()
    process.wait(timeout=30)


def shown(page) -> tuple[str, str]:
    """The verdict line and the result box's headline, once an answer is on the page (the verdict is
    worded from the answer's data just after it arrives)."""
    page.locator("#heatmap img").wait_for(timeout=60_000)
    # worded, not Gradio's pending timer ("0.0s"), which the box shows while the wording event runs
    page.wait_for_function("() => { const t = document.querySelector('#verdict').innerText.trim();"
                           " return t.length > 0 && !/^(processing)?[\\s|]*[\\d.]+s\\b/i.test(t); }", timeout=30_000)
    return page.locator("#verdict").inner_text(), page.locator(HEADLINE).inner_text()


@NEEDS_CHROMIUM
def test_examples_work_after_the_sweep_and_an_expired_upload_is_told_plainly(swept_app, tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    url, log, not_skin, answered = swept_app
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
            expect(examples).to_have_count(17)  # every example on one page (the model's own too), each named
            assert all(box["y"] >= 0 for box in (examples.nth(i).bounding_box() for i in range(17)))
            assert all(e.evaluate("b => b.getBoundingClientRect().right <= window.innerWidth")
                       for e in examples.all())  # none hidden off the side
            example = lambda name: examples.filter(has=page.get_by_text(name, exact=True))
            headline = page.locator(HEADLINE)
            example(answered).click()
            at_start = shown(page)
            # the answer is brought into view where the example was tapped (on a phone, two screens up)
            page.wait_for_function("() => { const r = document.querySelector('#verdict').getBoundingClientRect();"
                                   " return r.top >= -1 && r.top < window.innerHeight; }", timeout=10_000)
            # the headline and the bars tell one story: the classes the verdict names, most likely first
            assert at_start[0].startswith(("Most likely: ", "One of: "))
            bars = page.locator("#label .confidence-set")
            first_bar = bars.first.get_attribute("data-testid").removesuffix("-confidence-set")
            assert at_start[1] == first_bar or at_start[1].startswith(f"One of: {first_bar}")
            time.sleep(4)  # the sweeper has run several times on files older than the photo's copy
            example(not_skin).click()
            expect(page.locator("#verdict")).not_to_have_text(at_start[0], timeout=60_000)
            expect(headline).not_to_have_text(at_start[1], timeout=60_000)  # the result box has followed
            no_verdict, no_headline = shown(page)
            # not an answer, so the big type says so and is no class name
            assert not no_verdict.startswith("Most likely") and no_headline == VERDICTS[NOT_SKIN].headline
            expect(bars).to_have_count(0)  # and no class bar under it looks like an answer
            title = page.locator("#label [data-testid=block-label]").bounding_box()
            assert headline.bounding_box()["y"] >= title["y"] + title["height"]  # not written under the box's title
            page.screenshot(path=str(ARTIFACTS / f"browser_example_not_skin_{width}px.png"), full_page=True)
            example(answered).click()
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
            cells = page.locator("#compare-table td, #compare-table th")
            expect(cells.first).to_be_visible(timeout=30_000)
            for cell in cells.all():  # no word broken across lines ("met hod"): each cell is one line
                assert cell.evaluate("c => { const r = document.createRange(); r.selectNodeContents(c);"
                                     " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size <= 1; }"
                                     ), cell.inner_text()
            assert not page.locator("#compare-numbers").is_visible()  # the raw curves are one tap away
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
    # what the page must show: the API's answer for the same photo and settings, in the page's words
    _, _, verdict, sentence, _ = Client(app_url, verbose=False).predict(
        handle_file(photo), "Grad-CAM", "Most likely class", 0.45, 3, "fine", api_name="/explain")  # page defaults

    with sync_playwright() as p:
        browser = open_browser(p, tmp_path, monkeypatch)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(app_url)
        expect(page.locator("#disclaimer")).to_contain_text("not a diagnosis", timeout=30_000)
        expect(page.locator("#model-status")).to_contain_text("tiny-test-model")
        page.locator("#photo input[type=file]").set_input_files(photo)  # analysed as it arrives
        expect(page.locator("#verdict")).to_contain_text(verdict["text"], timeout=60_000)
        assert page.locator("#verdict strong").first.inner_text() == verdict["summary"]  # its first sentence bold
        expect(page.locator("#faithfulness")).to_contain_text(sentence)
        expect(page.locator("#label")).to_contain_text("%")
        for name in ("Dots", "Rings", "Stripes"):
            expect(page.locator("#label")).to_contain_text(name)
        heatmap = page.locator("#heatmap img")
        expect(heatmap).to_be_visible(timeout=30_000)
        assert heatmap.evaluate("img => img.naturalWidth") == 512
        for box in ("#photo", "#heatmap"):  # each title sits above its picture, not over its corner
            title = page.locator(f"{box} [data-testid=block-label]").bounding_box()
            assert title["y"] + title["height"] <= page.locator(f"{box} img").first.bounding_box()["y"] + 1, box
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
        # analysed as it arrives: refused, the old answer and Compare gone, the reason on the page itself
        expect(page.locator("#verdict")).to_contain_text("Not analysed.", timeout=30_000)
        expect(page.locator("#verdict")).to_contain_text("damaged or truncated")
        expect(page.locator("#heatmap img")).to_have_count(0)
        expect(page.locator("#label .confidence-set")).to_have_count(0)
        expect(page.locator("#compare-gallery img")).to_have_count(0)
        expect(page.locator("#faithfulness")).to_have_text("")
        page.wait_for_timeout(30_000)  # the toast has faded; the reason has not
        expect(page.locator("#verdict")).to_contain_text("damaged or truncated", timeout=1_000)
        page.screenshot(path=str(ARTIFACTS / "browser_bad_upload.png"), full_page=True)
        text = tmp_path / "notes.jpg"
        text.write_text("just some text, not an image\n")
        page.locator("#photo input[type=file]").set_input_files(str(text))
        expect(page.locator("#verdict")).to_contain_text("not a photo this app can read", timeout=30_000)
        # the photo box shows no broken-image icon: the picture it cannot draw is hidden
        undrawable = page.locator("#photo img").first
        expect(undrawable).to_have_css("visibility", "hidden")
        assert undrawable.evaluate("img => img.complete && img.naturalWidth === 0")
        page.locator("#photo input[type=file]").set_input_files(photo)  # the next photo replaces the reason
        expect(page.locator("#verdict")).to_contain_text(verdict["summary"], timeout=60_000)
        expect(page.locator("#verdict")).not_to_contain_text("Not analysed")
        expect(page.locator("#photo img").first).to_be_visible()  # a photo it can draw shows again
        browser.close()
