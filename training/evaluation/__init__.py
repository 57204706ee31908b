"""How a model is measured: metrics, grouped cross-validation and leave-one-library-out runs, the
verdicts' thresholds and abstention study, the conformal shortlist, the logo study."""
