"""Quality gates: the Great Expectations runner and what a raw gate checks about a delivery."""
