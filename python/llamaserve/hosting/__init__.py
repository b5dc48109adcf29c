"""Model hosting, apart from HTTP: which engines are loaded, leases on them, loads in the
background within a memory budget, eviction and idle unloading.

- host.py: ModelHost, the one object the server asks (routing by name, leases, retire)
- loads.py: load jobs (quantize first when asked), their progress and failures
- opening.py: opening one GGUF as an engine with the server's and the config's options
- eviction.py: which models make way (memory budget, model count)
- loaded.py: LoadedModel and LoadJob
- errors.py: the domain errors the HTTP layer maps to statuses
"""
