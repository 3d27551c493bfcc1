"""The router runtime: load and verify an export bundle, route requests (Python reference router, HTTP).
Imports no mlflow, optuna, prefect or dask; LightGBM only to run the bundle's text models (through its C
API's single-row fast path), beside `trees.py`, the numpy reference evaluator of the bundle's JSON models."""
