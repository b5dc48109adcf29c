"""Formats whose calls are JSON after a family's own markers (Llama 3.x, Mistral, DeepSeek,
Kimi, Granite, Functionary, Command R, ...), most specific first."""
from __future__ import annotations

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.deepseek import DeepSeekR1, DeepSeekV31
from llamaserve.server.chat.formats.deepseek_dsml import DeepSeekV32, DeepSeekV4
from llamaserve.server.chat.formats.functionary import FunctionaryV31, FunctionaryV32
from llamaserve.server.chat.formats.json_lists import (Apertus, Apriel, CommandR7B, CommandRPlus, FireFunction,
                                                       GigaChat3, GigaChat31, Granite, NemotronNanoV2)
from llamaserve.server.chat.formats.kimi import KimiK2, KimiK3
from llamaserve.server.chat.formats.llama3 import Llama3
from llamaserve.server.chat.formats.mistral import Mistral, MistralNemo

FORMATS: tuple[type[ToolFormat], ...] = (
    MistralNemo, Mistral, DeepSeekV4, DeepSeekV32, DeepSeekR1, DeepSeekV31, KimiK2, KimiK3, FunctionaryV32,
    FunctionaryV31, FireFunction, Llama3, Granite, CommandR7B, CommandRPlus, Apertus, Apriel, NemotronNanoV2,
    GigaChat31, GigaChat3)
