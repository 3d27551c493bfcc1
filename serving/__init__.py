"""The router side of beast-mode: load and verify an export bundle (no mlflow, optuna, prefect or lightgbm)."""
