"""One package per served model: its code, schemas, pre/post-processing and services."""
