"""Measurements on trained models (token interaction of a mixer layer)."""
