from lkmseg.models.blocks import VALID_FORMS, BlockSpec, make_block, parse_block
from lkmseg.models.unet import ModelConfig, UNet, build_model, count_params

__all__ = ["VALID_FORMS", "BlockSpec", "ModelConfig", "UNet", "build_model", "count_params",
           "make_block", "parse_block"]
