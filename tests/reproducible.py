"""What a test that compares two generations asks for: each run prefills its own prompt and
decodes one token a step. A second run that reused the first's cached prefix, or a step that
verified drafted tokens (whether the engine drafts depends on the step times it has measured),
computes the same tokens in a different batch shape, so a near tie between two candidates may
flip (and more so under load)."""
FRESH = dict(cache_prompt=False, speculative=False)
