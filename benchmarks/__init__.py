"""The serving benchmark: in-process ceilings, the gateway batched and unbatched, a FastAPI baseline.

Run it with ``python -m benchmarks`` (``--quick`` for short points, ``--tiny`` for tiny models in a
throw-away store); see ``benchmarks/RESULTS.md`` for the last run.
"""
