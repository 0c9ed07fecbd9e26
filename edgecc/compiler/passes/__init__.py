"""Graph-to-graph passes and the manager that runs, verifies and logs them."""
from .aw_conv_taps import lower_aw_conv_taps, recognize_aw_conv
from .constant_folding import ConstantFolding, fold_constants
from .dead_code import eliminate_dead_code
from .fold_activation_into_thresholds import fold_activation_into_thresholds
from .discover_shared_weights import discover_shared_weights
from .fold_batchnorm import fold_batchnorm
from .fold_batchnorm_shared import fold_batchnorm_shared_weight, fold_batchnorm_slices
from .fold_bn_into_binary import fold_bn_into_binary
from .merge_pa_coefficients import merge_pa_coefficients
from .identity_elimination import eliminate_identities
from .lower_indexed_conv import lower_indexed_conv, recognize_indexed_conv
from .manager import PassManager, default_pipeline, log_change, pass_name

__all__ = ["PassManager", "default_pipeline", "log_change", "pass_name", "ConstantFolding",
           "fold_constants", "eliminate_dead_code", "fold_batchnorm", "eliminate_identities",
           "fold_bn_into_binary", "merge_pa_coefficients", "fold_activation_into_thresholds",
           "discover_shared_weights", "fold_batchnorm_slices", "fold_batchnorm_shared_weight",
           "recognize_indexed_conv", "lower_indexed_conv", "recognize_aw_conv", "lower_aw_conv_taps"]
