"""What a served lkmseg model accepts and returns, and how the optional extra is checked.

Kept free of heavy imports: clients, the load test and the CLI read these names.
"""

from __future__ import annotations

from lkmseg.errors import UserError
from lkmseg.serve.limits import MAX_PIXELS, MAX_SIDE  # noqa: F401 — re-exported

MODEL_NAME = "lkmseg"
INPUT = "image"  # uint8 (B, H, W, 3), RGB
MASK = "mask"  # uint8 (B, H, W), {0, 1}
LOGITS = "logits"  # float32 (B, H, W), the model's logits resized to the image (--logits)
EXTRA_HINT = "pip install 'lkmseg[serve]'"


def missing_extra(e: ImportError) -> UserError:
    """The one-line error for a module of the ``serve`` extra that does not import."""
    return UserError(f"serving needs the optional 'serve' extra ({e.name or 'a module'} is "
                     f"missing: {e.msg}); {EXTRA_HINT} (Linux x86-64/aarch64 only)")


def check_extra() -> None:
    """UserError unless PyTriton (with its Triton server) and tritonclient import."""
    try:
        import pytriton.triton  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError as e:
        raise missing_extra(e) from e
