"""Handwritten digits: a base64 image in, the digit 0–9 out, by an SVM or a small CNN (seed 002)."""
