"""The Anthropic Messages API under /v1/messages, used unchanged by the anthropic SDK.

- protocol.py: the request (Anthropic's names mapped onto the one request model and onto the
  chat request /v1/chat/completions runs), the message and event shapes
- serving.py: a request as engine work (the /v1 chat plan: template, tools, grammar), results
  as a message or Anthropic's stream of events
- errors.py: the one API error type rendered in Anthropic's shape
- api_router.py: the route
"""
