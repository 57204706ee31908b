"""The parts of the evaluate step (`training/evaluate.py`): metrics, grouped cross-validation and
leave-one-source-out runs, the verdicts' thresholds and abstention study, the watermark check, plots."""
