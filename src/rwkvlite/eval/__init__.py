"""Measure quality the way the field does: perplexity / bits per byte, LAMBADA, PIQA, fidelity."""
from .data import read_lambada, read_piqa, read_text
from .tasks import fidelity, lambada, perplexity, piqa

__all__ = ["perplexity", "lambada", "piqa", "fidelity", "read_text", "read_lambada", "read_piqa"]
