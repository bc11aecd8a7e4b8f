"""Titanic survival: a list of passengers in, 0/1 predictions out (seed 004)."""
