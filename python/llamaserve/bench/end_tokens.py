"""The end-of-sequence tokens a load bans (logit_bias) so that every request has --tokens
tokens. Their ids differ per model, so they are asked of the server: each common end marker
is sent to llama-server's /tokenize (llamaserve serves it too); one that is a single token
is banned. A server without /tokenize gets no ban (then --ban gives the ids)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

# End-of-turn and end-of-text markers of the common chat formats (ChatML, Gemma, Llama 3,
# Phi, Mistral and Llama 2, gpt-oss); a model's start-of-turn marker ends a turn too.
END_MARKERS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<end_of_turn>", "<start_of_turn>",
               "<eos>", "</s>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|end|>", "<|return|>")


def served_end_tokens(url: str, model: str | None = None, api_key: str | None = None,
                      timeout: float = 30.0) -> tuple[int, ...]:
    """The ids of the end markers the server's model has as single tokens; () when the
    server has no /tokenize."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    ids: list[int] = []
    for marker in END_MARKERS:
        body: dict[str, object] = {"content": marker, "add_special": False, "parse_special": True}
        if model and model != "default":
            body["model"] = model
        request = urllib.request.Request(url.rstrip("/") + "/tokenize", json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                tokens = json.loads(response.read()).get("tokens") or []
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 405):
                return ()
            raise RuntimeError(f"{url}/tokenize: HTTP {exc.code}") from None
        if len(tokens) == 1 and isinstance(tokens[0], int) and tokens[0] not in ids:
            ids.append(tokens[0])
    return tuple(ids)
