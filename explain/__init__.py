"""Skin-condition photo classification that explains itself.

Modules, in the order a request meets them: `settings` (configuration), `images`
(decode and validate an upload), `resolve` (which model answers: a folder, the Hub via `hub`, or
the bundled one), `model` (the model folder's contract: write, load and check it), `model_config`
(its `config.json`), `cam_layers` (which layers a map explains), `layers` (preprocessing inside the
model), `classifier` (probabilities and uncertainty), `verdicts` (the rule that answers, lists,
holds back, or says "another condition" or "not skin"), `cams` (Grad-CAM and friends),
`faithfulness` (how much of the answer a map finds, against a random mask), `overlay` (heatmap over
the photo, as JPEG), `card` (what the app reads from the model card), `service` (what the app, the
API and the command line call; returns domain objects), `page` (the app's wording of them),
`errors` (the typed errors whose messages say what to do), `cleanup` and `temp_folder` (deleting
uploads and heatmaps afterwards, in a folder of the app's own), `memory` (handing freed memory back)
and `lifecycle` (stopping cleanly on SIGTERM). Importing this package loads nothing heavy.
"""

import os

# TensorFlow's start-up notes (CPU instructions, oneDNN) read like faults to a newcomer; its
# warnings and errors still show. Set before anything imports TensorFlow; an explicit value wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
