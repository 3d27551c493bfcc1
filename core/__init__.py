"""The shared kernel every package may import: typed config, errors, atomic files, Dask clusters, plots."""
