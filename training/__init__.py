"""Training entry points: ``python -m training.<model>`` trains one model, ``python -m training``
trains every default model that is missing from the store."""
