"""The Anthropic Messages API under /v1/messages, used unchanged by the anthropic SDK.

- protocol.py: the request (Anthropic's names mapped onto the one request model and onto the
  chat pipeline's request), the message and event shapes
- serving.py: the chat pipeline's events (server/chat/) as a message or Anthropic's stream
- errors.py: the one API error type rendered in Anthropic's shape
- api_router.py: the routes (messages, count_tokens); family.py: the family's declaration
"""
