"""The training pipeline, `python -m training <step>` (docs/training.md). Folders by role, each importing
only those before it: config.py, data/, model/, evaluation/, report/, steps/ (the command's verbs)."""
