"""llama-cpp-python's Python API on llamaserve's engine: `from llamaserve import Llama`."""
from llamaserve.compat.errors import UnsupportedArgument
from llamaserve.compat.grammar import LlamaGrammar
from llamaserve.compat.llama import Llama
from llamaserve.compat.speculative import LlamaPromptLookupDecoding

__all__ = ["Llama", "LlamaGrammar", "LlamaPromptLookupDecoding", "UnsupportedArgument"]
