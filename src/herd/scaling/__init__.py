"""Scaling laws: Chinchilla's parametric fit (approach 3) and Llama 3's IsoFLOP power law (approach 2).

The runs a sweep trains (:mod:`herd.scaling.runs`) are fitted here to predict
the loss, and the compute-optimal size, of a model too large to train twice
(Llama 3 §3.2.1; Hoffmann et al. 2022).
"""

from herd.scaling.chinchilla import CHINCHILLA, EPOCH, ChinchillaFit, ChinchillaLaw, fit_chinchilla
from herd.scaling.isoflop import LLAMA3, IsoflopFit, IsoflopMinimum, PowerLaw, fit_isoflop

__all__ = [
    "CHINCHILLA",
    "EPOCH",
    "LLAMA3",
    "ChinchillaFit",
    "ChinchillaLaw",
    "IsoflopFit",
    "IsoflopMinimum",
    "PowerLaw",
    "fit_chinchilla",
    "fit_isoflop",
]
