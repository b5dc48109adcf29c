"""What a test that compares two generations asks for: each run prefills its own prompt.
A second run that reused the first's cached prefix computes the same tokens in a different
batch shape, so a near tie between two candidates may flip (and more so under load)."""
FRESH = dict(cache_prompt=False)
