"""Tasks: each owns its data, model construction, loss and evaluation; ``fastformer.train.Trainer`` runs the loop."""
