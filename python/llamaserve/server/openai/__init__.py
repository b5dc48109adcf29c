"""The OpenAI-compatible API under /v1, used unchanged by the OpenAI SDK and LangChain.

- protocol.py: what every request shares (generation parameters mapped onto the one request
  model), and the completions request; chat_protocol.py: the chat request
- responses.py: response and chunk shapes; logprobs.py: OpenAI's two log-probability shapes
- serving_chat.py, serving_completions.py: the chat pipeline's events (server/chat/) as chat
  completions and text completions, whole or streamed
- responses_protocol.py, serving_responses.py: the Responses API (stateless), read into a chat
  request and run on the chat pipeline; its response object and typed event stream
- errors.py: the one API error type rendered in OpenAI's shape
- api_router.py: the routes; family.py: the family's declaration (server/family.py)
"""
