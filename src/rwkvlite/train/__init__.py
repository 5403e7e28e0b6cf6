"""Training from scratch and distillation, on the same model code inference uses."""
from .config import TrainConfig
from .data import TokenData
from .init import reference_init
from .trainer import distill, train

__all__ = ["TrainConfig", "TokenData", "train", "distill", "reference_init"]
