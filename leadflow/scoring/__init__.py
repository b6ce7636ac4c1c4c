"""Lead scoring: versioned scoring models, scores with explanations and history, thresholds that
act, incremental and full (set-based) rescoring."""
