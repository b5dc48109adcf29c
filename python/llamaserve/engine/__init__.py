"""The public engine facade over the native continuous-batching engine (`_native`): `Engine`
(engine.py), its token streams (streams.py) and the arguments every call shares
(arguments.py). With native.py, the only place that imports `_native`."""
from llamaserve.engine.arguments import Prompt, failure_of, native_settings
from llamaserve.engine.engine import DEFAULT_CACHE_RAM, Engine
from llamaserve.engine.streams import AsyncTextStream, TextStream

__all__ = ["DEFAULT_CACHE_RAM", "AsyncTextStream", "Engine", "Prompt", "TextStream", "failure_of", "native_settings"]
