"""Segments: the marketer's rule file validated and compiled to a dbt model."""
