from lkmseg.models.arch import build_model
from lkmseg.models.blocks import VALID_FORMS, BlockSpec, make_block, parse_block
from lkmseg.models.modelconfig import ARCHS, NATIVE, ModelConfig, parse_arch
from lkmseg.models.surgery import recalibrate_bn, separable
from lkmseg.models.unet import UNet, count_params

__all__ = ["ARCHS", "NATIVE", "VALID_FORMS", "BlockSpec", "ModelConfig", "UNet", "build_model",
           "count_params", "make_block", "parse_arch", "parse_block", "recalibrate_bn",
           "separable"]
