"""Every API family the server speaks, each declared once in its own package; the app, auth,
rate limits and the Ray gateway read them from here."""
from __future__ import annotations

from llamaserve.server.anthropic.family import FAMILY as ANTHROPIC
from llamaserve.server.family import Families
from llamaserve.server.health import FAMILY as HEALTH
from llamaserve.server.llamacpp.family import FAMILY as LLAMACPP
from llamaserve.server.native.family import FAMILY as NATIVE
from llamaserve.server.ollama.family import FAMILY as OLLAMA
from llamaserve.server.openai.family import FAMILY as OPENAI
from llamaserve.server.vertex import FAMILY as VERTEX

FAMILIES = Families((NATIVE, OPENAI, ANTHROPIC, LLAMACPP, OLLAMA, HEALTH, VERTEX))
