"""Benchmarks: an HTTP load generator for OpenAI-compatible and llamaserve servers, and the
in-process engine figures."""
