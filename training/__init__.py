"""The training pipeline: `python -m training <step>` (see README, 'Training')."""
