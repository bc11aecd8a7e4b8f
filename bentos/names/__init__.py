"""Surname nationality: a surname in, the most likely countries with log-probabilities out (seed 000)."""
