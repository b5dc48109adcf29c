"""Ollama's API under /api (not /api/v1, the native API): chat, generate, embeddings and the
model listings, on the same chat pipeline as the other families."""
