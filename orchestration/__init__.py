"""Dagster wrappers: each domain module hands its assets, checks and jobs up to definitions.py."""
