"""Formats whose calls are XML-like markup, channels or Python syntax (Qwen3-Coder, GLM,
MiniMax, Seed-OSS, gpt-oss harmony, Gemma, LFM2, ...), most specific first."""
from __future__ import annotations

from llamaserve.server.chat.formats.base import ToolFormat
from llamaserve.server.chat.formats.gemma4 import Gemma4
from llamaserve.server.chat.formats.glm import Glm, Hy3
from llamaserve.server.chat.formats.harmony import Harmony
from llamaserve.server.chat.formats.lfm2 import Lfm2
from llamaserve.server.chat.formats.minicpm import MiniCpm5
from llamaserve.server.chat.formats.minimax import MiniMaxM1, MiniMaxM2, MiniMaxM3
from llamaserve.server.chat.formats.muse import MuseGlimmer
from llamaserve.server.chat.formats.qwen_xml import Qwen3Coder, SeedOss
from llamaserve.server.chat.formats.solar import SolarOpen

FORMATS: tuple[type[ToolFormat], ...] = (
    Harmony, MuseGlimmer, SolarOpen, Gemma4, Lfm2, MiniMaxM3, MiniMaxM2, MiniMaxM1, SeedOss, Hy3, Glm, MiniCpm5,
    Qwen3Coder)
