"""Ollama's model names (`name:tag`) and ours (registry names: GGUF file stems, aliases from
the models config).

| Ollama name | served by |
|---|---|
| `x` or `x:latest` | the model named `x` |
| `x:tag` | the model named `x:tag`, else the one named `x-tag` (`smollm2:135m` -> `smollm2-135m`) |

Listings (/api/tags, /api/ps) show each model as `<registry name>:latest`, which maps back."""
from __future__ import annotations

from llamaserve.hosting.host import ModelHost
from llamaserve.models import RegistryError

LATEST = ":latest"


def candidates(name: str) -> list[str]:
    """Our names an Ollama name may mean, the likeliest first."""
    name = name.strip()
    if name.lower().endswith(LATEST):
        name = name[: -len(LATEST)]
    if ":" not in name:
        return [name]
    return [name, name.replace(":", "-")]


def ours(host: ModelHost, name: str) -> str:
    """The registry (or loaded) name an Ollama name means; the name unchanged when none
    matches, so that the lease reports it as not found in the usual way."""
    options = candidates(name)
    for option in options:
        if option.lower() == "default" or host._find_loaded(option) is not None:
            return option
    for option in options:
        try:
            host.registry.resolve(option, rescan=False)
            return option
        except RegistryError:
            continue
    return options[0]


def theirs(name: str) -> str:
    """How an Ollama client sees one of our names."""
    return name if ":" in name else name + LATEST
