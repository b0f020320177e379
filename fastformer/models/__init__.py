from fastformer.models.encoder import Encoder
from fastformer.models.heads import AttentionPooling, ClassificationHead

__all__ = ["Encoder", "AttentionPooling", "ClassificationHead"]
