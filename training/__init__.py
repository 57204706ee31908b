"""The training pipeline: `python -m training <step>` (see docs/training.md)."""
