"""The baseline: a Gradio app whose function returns at once (same input and output types as ours)."""

import os

import gradio as gr
from PIL import Image

RESULT = Image.new("RGB", (448, 448), (200, 120, 100))

with gr.Blocks(analytics_enabled=False) as demo:
    photo = gr.Image(type="filepath")
    out = gr.Image(format="jpeg", type="pil")
    gr.Button().click(lambda p: RESULT, photo, out, api_name="noop")

if __name__ == "__main__":
    demo.queue().launch(server_name="127.0.0.1", server_port=int(os.environ["SKIN_PORT"]), show_error=False)
