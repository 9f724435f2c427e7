"""tessera: a customer-data and personalization platform on DuckDB, dbt, Dagster and MLflow."""

__version__ = "0.1.0"
