"""The library classes under test, imported in the one order that works.

Importing ``paddleformers`` turns off ``transformers``' torch support
(``is_torch_available`` becomes ``False``), so every HuggingFace torch class is
imported here first, and ``paddleformers`` after it.
"""

from transformers import (
    BertConfig,
    BertModel,
    DeepseekV3Config,
    DeepseekV3Model,
    Ernie4_5Config,
    Ernie4_5Model,
    Glm4MoeConfig,
    Glm4MoeModel,
    GptOssConfig,
    GptOssModel,
    LlamaConfig,
    LlamaModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeModel,
    Qwen3Config,
    Qwen3Model,
    Qwen3MoeConfig,
    Qwen3MoeModel,
)

from paddleformers.transformers import BertConfig as PaddleBertConfig  # isort: skip
from paddleformers.transformers import BertModel as PaddleBertModel  # isort: skip
from paddleformers.transformers import LlamaConfig as PaddleLlamaConfig  # isort: skip
from paddleformers.transformers import LlamaModel as PaddleLlamaModel  # isort: skip
from paddleformers.transformers import Qwen2Config as PaddleQwen2Config  # isort: skip
from paddleformers.transformers import Qwen2ForCausalLM as PaddleQwen2ForCausalLM  # isort: skip
from paddleformers.transformers import Qwen2MoeConfig as PaddleQwen2MoeConfig  # isort: skip
from paddleformers.transformers import Qwen2MoeModel as PaddleQwen2MoeModel  # isort: skip
from paddleformers.transformers import Qwen3Config as PaddleQwen3Config  # isort: skip
from paddleformers.transformers import Qwen3Model as PaddleQwen3Model  # isort: skip
from paddleformers.transformers import Qwen3MoeConfig as PaddleQwen3MoeConfig  # isort: skip
from paddleformers.transformers import Qwen3MoeModel as PaddleQwen3MoeModel  # isort: skip
from paddleformers.transformers import Ernie4_5Config as PaddleErnie4_5Config  # isort: skip
from paddleformers.transformers import Ernie4_5Model as PaddleErnie4_5Model  # isort: skip
from paddleformers.transformers import GptOssConfig as PaddleGptOssConfig  # isort: skip
from paddleformers.transformers import GptOssModel as PaddleGptOssModel  # isort: skip
from paddleformers.transformers import DeepseekV3Config as PaddleDeepseekV3Config  # isort: skip
from paddleformers.transformers import DeepseekV3Model as PaddleDeepseekV3Model  # isort: skip
from paddleformers.transformers import Glm4MoeConfig as PaddleGlm4MoeConfig  # isort: skip
from paddleformers.transformers import Glm4MoeModel as PaddleGlm4MoeModel  # isort: skip

__all__ = [
    "BertConfig",
    "BertModel",
    "DeepseekV3Config",
    "DeepseekV3Model",
    "Ernie4_5Config",
    "Ernie4_5Model",
    "Glm4MoeConfig",
    "Glm4MoeModel",
    "GptOssConfig",
    "GptOssModel",
    "LlamaConfig",
    "LlamaModel",
    "PaddleBertConfig",
    "PaddleBertModel",
    "PaddleDeepseekV3Config",
    "PaddleDeepseekV3Model",
    "PaddleErnie4_5Config",
    "PaddleErnie4_5Model",
    "PaddleGlm4MoeConfig",
    "PaddleGlm4MoeModel",
    "PaddleGptOssConfig",
    "PaddleGptOssModel",
    "PaddleLlamaConfig",
    "PaddleLlamaModel",
    "PaddleQwen2Config",
    "PaddleQwen2ForCausalLM",
    "PaddleQwen2MoeConfig",
    "PaddleQwen2MoeModel",
    "PaddleQwen3Config",
    "PaddleQwen3Model",
    "PaddleQwen3MoeConfig",
    "PaddleQwen3MoeModel",
    "Qwen2Config",
    "Qwen2ForCausalLM",
    "Qwen2MoeConfig",
    "Qwen2MoeModel",
    "Qwen3Config",
    "Qwen3Model",
    "Qwen3MoeConfig",
    "Qwen3MoeModel",
]
