"""The training pipeline, `python -m training <step>` (docs/training.md). Folders by role, each importing
only those before it: config.py, data/, model/, evaluation/, report/, steps/ (the command's verbs)."""

import os

# TensorFlow's BFC allocator keeps the memory a training step freed for the next one; its default CPU
# allocator maps fresh pages for every large tensor, and the kernel spends CPU zeroing them
# (`python -m benchmarks.bench finetune`, docs/performance.md). Read when TensorFlow starts; a caller's
# own setting wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
