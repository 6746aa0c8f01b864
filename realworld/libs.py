"""The library classes under test, imported in the one order that works.

Importing ``paddleformers`` turns off ``transformers``' torch support
(``is_torch_available`` becomes ``False``), so every HuggingFace torch class is
imported here first, and ``paddleformers`` after it.
"""

from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaModel,
    Qwen2MoeConfig,
    Qwen2MoeModel,
)

from paddleformers.transformers import BertConfig as PaddleBertConfig  # isort: skip
from paddleformers.transformers import BertModel as PaddleBertModel  # isort: skip
from paddleformers.transformers import LlamaConfig as PaddleLlamaConfig  # isort: skip
from paddleformers.transformers import LlamaModel as PaddleLlamaModel  # isort: skip
from paddleformers.transformers import Qwen2MoeConfig as PaddleQwen2MoeConfig  # isort: skip
from paddleformers.transformers import Qwen2MoeModel as PaddleQwen2MoeModel  # isort: skip

__all__ = [
    "BertConfig",
    "BertModel",
    "LlamaConfig",
    "LlamaModel",
    "PaddleBertConfig",
    "PaddleBertModel",
    "PaddleLlamaConfig",
    "PaddleLlamaModel",
    "PaddleQwen2MoeConfig",
    "PaddleQwen2MoeModel",
    "Qwen2MoeConfig",
    "Qwen2MoeModel",
]
