"""Skin-condition photo classification that explains itself.

Modules, in the order a request meets them: `settings` (configuration), `images`
(decode and validate an upload), `hub` and `model` (the model folder's contract: find,
write, load and check it), `layers` (preprocessing inside the model), `classifier`
(probabilities and uncertainty), `cams` (Grad-CAM and friends), `overlay` (heatmap over the
photo, as JPEG), `card` (the model card's disclaimer), `service` (what the app, the API and
the command line call; returns domain objects), `page` (the app's wording of them) and
`verdicts` (the rule that answers, holds back, or says "another condition" or "not skin"),
`faithfulness` (how much of the answer a map finds, against a random mask), `errors` (the typed
errors whose messages say what to do), `cleanup` and `temp_folder` (deleting uploads and heatmaps
afterwards, in a folder of the app's own) and `lifecycle` (stopping cleanly on SIGTERM). Importing
this package loads nothing heavy.
"""

import os

# TensorFlow's start-up notes (CPU instructions, oneDNN) read like faults to a newcomer; its
# warnings and errors still show. Set before anything imports TensorFlow; an explicit value wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
