"""The native API under /api/v1 (the spec): generate, stream, batch, models.

- protocol.py: request parsing (generation parameters come from llamaserve.generation_params)
  and response bodies
- catalog.py: the model listing's JSON
- serving.py: turning requests into engine work (SSE events, batches, loads)
- api_router.py: the routes
"""
