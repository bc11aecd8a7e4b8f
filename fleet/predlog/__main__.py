"""``python -m fleet.predlog``: runs the benchmark / migration CLI of ``fleet.predlog.bench``."""

from fleet.predlog.bench import main

if __name__ == "__main__":
    main()
