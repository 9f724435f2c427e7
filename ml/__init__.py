"""Modelling code: recommender training and evaluation, MLflow tracking. No Dagster here."""
