"""Decisioning: the action catalogue, next best actions, content rendering and the variant bandit
(docs/decisioning.md)."""
