"""The Hugging Face Space: wires Gradio components to the `explain` library, nothing more.

Run `python app.py` (add `--share` for a public link). Which model answers is set by
environment variables; see README, 'Choosing the model'.
"""

import argparse
import functools
import inspect
import logging
import math
import os

# TensorFlow's BFC allocator keeps what a request's tensors freed for the next request; with glibc's mmap
# threshold fixed (Settings.malloc_mmap_threshold) the app's memory held level over an hour's soak where the
# default allocator's grew (docs/reliability.md). Set before TensorFlow starts; a caller's own setting wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import gradio as gr

from explain import memory, page
from explain.cams import DEFAULT_METHOD
from explain.cleanup import start_sweeper
from explain.components import AnswerLabel, HeatmapOutput, MapsGallery, PhotoInput
from explain.errors import SkinExplainError
from explain.lifecycle import RunningRequests, serve_until_stopped
from explain.page import DEFAULT_OPACITY, DEFAULT_TOP_K, GENERIC_ERROR, TOP_CLASS
from explain.service import Service, example_name
from explain.settings import Settings
from explain.temp_folder import cache_examples, own_temp_folder

log = logging.getLogger("app")
MODEL_QUEUE = "model"  # the concurrency group of every event that runs the model
PLAIN_FONT = ["ui-sans-serif", "system-ui", "Arial", "sans-serif"]  # the theme's font draws a capital E as "Ɛ"
# The examples shelf and the Compare maps: as many columns as fit (all in view on a phone too), whole captions;
# the result box's headline clear of its title, which takes two lines on a phone; the Compare table scrolls
# sideways on a phone rather than break its words mid-word.
CSS = """#label [data-testid=label-output-value] {margin-top: 1.8em;}
#examples .grid-container {grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)) !important;}
#compare-gallery .grid-container {grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)) !important;}
#examples .grid-wrap, #compare-gallery .grid-wrap {height: auto !important; min-height: 0 !important; max-height: none !important;}
#examples .caption-label, #compare-gallery .caption-label {white-space: normal; max-width: calc(100% - 8px); font-size: 0.85em;}
#compare-table table {display: block; overflow-x: auto;}
#compare-table th, #compare-table td {word-break: normal; overflow-wrap: normal; white-space: nowrap;}
#photo [data-testid=block-label], #heatmap [data-testid=block-label], #examples [data-testid=block-label],
#compare-gallery [data-testid=block-label] {position: static; margin-bottom: 6px; width: fit-content;}
.label-wrap {text-align: left;}"""


# After an answer: bring it into view where it is off screen (on a phone it lands two screens up)
SCROLL_TO_ANSWER = """() => {
  const answer = document.getElementById("verdict");
  const top = answer ? answer.getBoundingClientRect().top : 0;
  if (answer && (top < 0 || top > window.innerHeight * 0.6)) window.scrollTo({top: window.scrollY + top - 12, behavior: "smooth"});
}"""

# A file the browser cannot draw (a refused upload) shows no broken-image icon in the photo box; the
# answer box says why. Listeners on the document, as the photo's <img> is made anew with each upload.
HIDE_UNDRAWABLE_PHOTO = """<script>
document.addEventListener("error", e => { if (e.target.tagName === "IMG" && e.target.closest("#photo")) e.target.style.visibility = "hidden"; }, true);
document.addEventListener("load", e => { if (e.target.tagName === "IMG" && e.target.closest("#photo")) e.target.style.visibility = ""; }, true);
</script>"""


def shown_to_user(fn, running: RunningRequests, refusals: page.Refusals):
    """Library errors become readable gr.Error messages; anything else a generic one. Each refusal is
    kept for the page that asked (`refusals`), which shows it in place of the answer. Each call is
    counted in `running`, which refuses new ones while the app stops."""

    @functools.wraps(fn)
    def wrapper(*args):
        *inputs, request = args
        try:
            with running.admit():
                return fn(*inputs)
        except SkinExplainError as err:
            log.info("Refused: %s", err)  # one line: the reason, never the photo or its name
            refusals.record(request.session_hash if request else None, str(err))
            raise gr.Error(str(err), print_exception=False) from err
        except Exception as err:
            log.exception("Request failed")  # the traceback, never the photo
            refusals.record(request.session_hash if request else None, GENERIC_ERROR)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from err

    # Gradio passes the request to a last positional parameter typed gr.Request: fn's parameters, then it
    wrapper.__signature__ = inspect.Signature([
        *inspect.signature(fn).parameters.values(),
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request)])
    wrapper.__annotations__ = {"request": gr.Request}
    return wrapper


def gradio_upload_limit(settings: Settings) -> int:
    """Gradio's own limit on an upload: the library's in whole MiB, so that the upload box shows the
    README's figure ("20 Mb", not "19.1 Mb"); between the two, the library refuses with its message."""
    return math.ceil(settings.max_upload_bytes / 2**20) * 2**20


def build_app(service: Service, running: RunningRequests) -> gr.Blocks:
    labels = service.labels
    refusals = page.Refusals()
    predict = shown_to_user(functools.partial(page.predict_outputs, service), running, refusals)
    explain = shown_to_user(functools.partial(page.explain_outputs, service), running, refusals)
    explain_arrival = shown_to_user(functools.partial(page.explain_arrival, service), running, refusals)
    compare = shown_to_user(functools.partial(page.compare_outputs, service), running, refusals)
    model_info = functools.partial(page.model_info, service)

    with gr.Blocks(title="Skin condition classifier, explained", analytics_enabled=False) as demo:
        gr.Markdown("# Skin condition classifier, explained")
        gr.Markdown(page.disclaimer_summary(service.disclaimer), elem_id="disclaimer")
        with gr.Accordion("What this demo can and cannot do", open=False, elem_id="disclaimer-more"):
            gr.Markdown(service.disclaimer)
        status = gr.Markdown(page.model_status(model_info()), elem_id="model-status")
        with gr.Row():
            with gr.Column():
                photo = PhotoInput(label="Photo of the skin problem", sources=["upload", "clipboard", "webcam"],
                                   type="filepath", elem_id="photo")
                # at least 1..3 even without a model: Gradio needs maximum > minimum, and API calls say 3
                top_k = gr.Slider(1, max(DEFAULT_TOP_K, len(labels)), value=DEFAULT_TOP_K, step=1,
                                  label="How many conditions to list")
                with gr.Accordion("Explanation settings", open=False):
                    method = gr.Dropdown(page.method_choices(service), value=DEFAULT_METHOD, label="Method")
                    target = gr.Dropdown([TOP_CLASS, *labels], value=TOP_CLASS, label="Explain which class")
                    resolution = gr.Dropdown(page.resolutions(service), value=page.default_resolution(service),
                                             label="Map resolution",
                                             info="finer maps can follow a smaller spot; the line under each "
                                                  "map says how much it can be trusted")
                    opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity")
                button = gr.Button("Analyze", variant="primary", elem_id="analyze")
            with gr.Column():
                verdict_line = gr.Markdown(elem_id="verdict")
                label = AnswerLabel(label="The conditions it knows, most likely first", elem_id="label")
                heatmap = HeatmapOutput(label="Where the model looked", format="jpeg", type="pil", elem_id="heatmap")
                gr.Markdown(page.HEATMAP_LEGEND, elem_id="heatmap-legend")
                faithful = gr.Markdown(elem_id="faithfulness")
                with gr.Accordion("How far can these heatmaps be trusted?", open=False):
                    gr.Markdown(page.trust_note(service), elem_id="trust")
                    numbers = gr.JSON(label="This heatmap's faithfulness numbers", elem_id="faithfulness-numbers")
                with gr.Accordion("The answer as data (what the API returns)", open=False):
                    verdict = gr.JSON(label="Verdict", elem_id="verdict-data")
                    info = gr.JSON(label="Model", elem_id="model-info")
        with gr.Accordion("Compare methods", open=False, elem_id="compare-section"):
            gr.Markdown("The four methods' maps of the same class, each with how much of the answer it finds "
                        "(deletion area against a random mask) and its time, then the default method's maps "
                        "of the top three classes. Uses the photo and settings above.")
            compare_button = gr.Button("Compare methods", elem_id="compare")
            gallery = MapsGallery(label="Maps", columns=4, format="jpeg", elem_id="compare-gallery")
            compare_table = gr.Markdown(elem_id="compare-table")
            with gr.Accordion("The curves as data (what the API returns)", open=False):
                compare_numbers = gr.JSON(label="Curves", elem_id="compare-numbers")

        answer = [label, heatmap, verdict, faithful, numbers]
        settings = [photo, method, target, opacity, top_k, resolution]

        def refusal(request: gr.Request) -> str:
            return refusals.take(request.session_hash)

        def on_page(event):
            """The API returns data; the page then words the verdict and brings it into view, or, when
            the request was refused, empties the answer and says why in its place."""
            event.success(page.verdict_markdown, verdict, verdict_line, api_visibility="private").then(
                None, js=SCROLL_TO_ANSWER)
            event.failure(refusal, None, verdict_line, api_visibility="private").then(
                lambda: page.EMPTY_ANSWER, None, answer, api_visibility="private")

        demo.load(model_info, None, info, api_name="model_info").then(page.model_status, info, status,
                                                                       api_visibility="private")
        # one queue for everything that runs the model, so SKIN_CONCURRENCY bounds them all together
        on_page(button.click(explain, settings, answer, api_name="explain", concurrency_id=MODEL_QUEUE))
        on_page(top_k.change(predict, [photo, top_k], [label, verdict], api_name="predict",
                             concurrency_id=MODEL_QUEUE, trigger_mode="always_last"))
        on_page(opacity.release(explain, settings, answer, api_visibility="private", concurrency_id=MODEL_QUEUE))
        # every new photo (an upload, a paste, an example) clears the last answer, then is analysed at once
        on_page(photo.change(page.cleared, None, [verdict_line, *answer, gallery, compare_table, compare_numbers],
                             api_visibility="private", queue=False).then(
            explain_arrival, settings, answer, api_visibility="private", concurrency_id=MODEL_QUEUE))
        compared = compare_button.click(compare, [photo, target, opacity, resolution], [gallery, compare_numbers],
                                        api_name="compare", concurrency_id=MODEL_QUEUE)
        compared.success(page.compare_table, compare_numbers, compare_table, api_visibility="private")
        compared.failure(refusal, None, compare_table, api_visibility="private")

        examples = service.example_photos()
        if examples and service.classifier is not None:
            shelf = gr.Gallery([(p, example_name(p)) for p in examples], label="Examples: click one to analyze it",
                               columns=7, height="auto", allow_preview=False, object_fit="cover", buttons=[],
                               elem_id="examples")

            def pick(choice: gr.SelectData) -> str:
                return examples[choice.index]

            shelf.select(pick, None, photo, api_visibility="private")
            # the visitor's own photo: no example stays highlighted
            photo.upload(lambda: gr.Gallery(selected_index=None), None, shelf, api_visibility="private")
            gr.Markdown(page.EXAMPLES_CREDIT, elem_id="examples-credit")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    parser.add_argument("--port", type=int, help="port (default: SKIN_PORT, else GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args()
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO)
    memory.limit_arenas(settings.malloc_arenas)  # before the model's and the server's threads exist
    memory.fix_mmap_threshold(settings.malloc_mmap_threshold)
    service = Service.start(settings)
    running = RunningRequests()
    uploads = own_temp_folder()  # before the components are built: they take Gradio's folder when made
    demo = build_app(service, running)
    examples = cache_examples(service.example_photos(), uploads)
    start_sweeper(uploads, settings.cache_sweep_seconds, settings.cache_max_age_seconds, keep=examples,
                  then=memory.trim)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.launch(server_name=settings.host, server_port=args.port or settings.port, share=args.share or settings.share,
                max_file_size=gradio_upload_limit(settings), show_error=False, theme=gr.themes.Soft(font=PLAIN_FONT),
                css=CSS, head=HIDE_UNDRAWABLE_PHOTO, ssr_mode=False,  # no Node front server: SIGTERM is ours to handle (explain.lifecycle)
                prevent_thread_lock=True)
    serve_until_stopped(demo, running, uploads, settings.drain_seconds)


if __name__ == "__main__":
    main()
