"""Measurements on trained models: token interaction of a mixer layer (interaction.py), MQAR recall by pair
(recall.py), both from a run dir's checkpoint (checkpoint.py)."""
