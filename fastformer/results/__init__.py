"""Table builders: each ``fastformer/results/<table>.py`` turns run outputs (metrics.json) into
results/<table>.md|csv."""
