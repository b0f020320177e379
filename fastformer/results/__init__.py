"""Table builders: each ``fastformer/results/<table>.py`` turns run outputs (metrics.json) into
results/<table>.md|csv, laid out by ``rows.py`` (every table's datasets, rows, display names and paper numbers)."""
