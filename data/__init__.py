"""Dataset loaders: real data from installed packages, nothing fetched at run time."""
