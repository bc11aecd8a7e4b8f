"""Credit application approval: single and batch prediction, retraining into a new version (seed 001)."""
