"""Publishing: release of published versions, holdout groups, uplift and the popular-products ranking."""
