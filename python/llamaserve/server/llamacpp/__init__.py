"""llama-server's own endpoints, in its shapes, for its clients: /tokenize and /detokenize.

- protocol.py: request and response types
- api_router.py: the routes (tokenizing runs off the event loop)
"""
