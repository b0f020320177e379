from fastformer.train.trainer import Trainer

__all__ = ["Trainer"]
