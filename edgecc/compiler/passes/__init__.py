"""Graph-to-graph passes and the manager that runs, verifies and logs them."""
from .constant_folding import ConstantFolding, fold_constants
from .dead_code import eliminate_dead_code
from .fold_activation_into_thresholds import fold_activation_into_thresholds
from .fold_batchnorm import fold_batchnorm
from .fold_bn_into_binary import fold_bn_into_binary
from .merge_pa_coefficients import merge_pa_coefficients
from .identity_elimination import eliminate_identities
from .manager import PassManager, default_pipeline, log_change, pass_name

__all__ = ["PassManager", "default_pipeline", "log_change", "pass_name", "ConstantFolding",
           "fold_constants", "eliminate_dead_code", "fold_batchnorm", "eliminate_identities",
           "fold_bn_into_binary", "merge_pa_coefficients", "fold_activation_into_thresholds"]
