"""Compression passes: each is a frozen config and the function that applies it to a model
in place, registered under its recipe name (base.py); importing this package registers them all.

  lowrank        LowRankConfig       SVD factors of the r/k/v/g projections       lowrank.py
  recover        RecoverConfig       distil towards the original (factors, ln_out) recover.py
  ffn_predictor  FFNPredictorConfig  MLP + quantised-key sparsity predictors       ffn_predictor.py
  cluster_head   ClusterHeadConfig   clustered output head                        cluster_head.py
  fold_ln0       FoldLn0Config       ln0 folded into the embedding                 fold_ln0.py
  rtn (int)      RTNConfig           INT8/INT4 round-to-nearest of every matrix    rtn.py
  quantize       QuantConfig         GPTQ / GPTVQ / RWKVQuant of the projections   quantize.py

>>> from rwkvlite.passes import LowRankConfig, apply
>>> result = apply(model, LowRankConfig(factor=8))  # doctest: +SKIP
>>> result.report["params_after"], result.structure  # doctest: +SKIP
"""
from . import cluster_head, ffn_predictor, fold_ln0, lowrank, quantize, recover, rtn
from .base import PASSES, Compressed, ConfigError, Context, PassConfig, PassResult, apply, compress_model, config_for
from .cluster_head import ClusterHeadConfig
from .ffn_predictor import FFNPredictorConfig
from .fold_ln0 import FoldLn0Config
from .lowrank import LowRankConfig
from .quantize import QuantConfig
from .recover import RecoverConfig
from .rtn import RTNConfig

__all__ = ["PASSES", "Compressed", "ConfigError", "Context", "PassConfig", "PassResult", "apply", "compress_model",
           "config_for", "ClusterHeadConfig", "FFNPredictorConfig", "FoldLn0Config", "LowRankConfig", "QuantConfig",
           "RecoverConfig", "RTNConfig", "cluster_head", "ffn_predictor", "fold_ln0", "lowrank", "quantize", "recover",
           "rtn"]
