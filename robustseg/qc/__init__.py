"""Quality control without and with a reference: anomaly / mismatch scores, structure measurements,
ground-truth-free scores and robustness summaries. numpy / pandas only."""
