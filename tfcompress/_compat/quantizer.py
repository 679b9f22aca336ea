"""The LiteRT Quantizer's (``litert_quantizer``) modules beyond its public ``Quantizer``, isolated.

Checked against litert-quantizer 0.11.0 (the maintained successor of ai-edge-quantizer 0.10,
same modules). Its package exports only ``Quantizer``; building recipe entries per layer and
op (``recipe_manager``, ``qtyping``, ``algorithm_manager``) and reading a flatbuffer the way its
recipes match op names (``tfl_flatbuffer_utils``) have no public equivalent: the documented
``litert_quantizer.recipe`` helpers build whole-model recipes only.
"""

from litert_quantizer import Quantizer, algorithm_manager, qtyping, recipe_manager  # noqa: F401
from litert_quantizer.utils import tfl_flatbuffer_utils  # noqa: F401
