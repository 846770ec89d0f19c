"""Quality control without and with a reference: anomaly / mismatch scores, structure measurements
(``anomaly``), ground-truth-free confidence scores (``scores``), risk-coverage evaluation (``riskcov``) and the
failure-detection benchmark built from them (``benchmark``), robustness summaries. numpy / pandas only."""
