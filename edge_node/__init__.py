"""fsnode's edge server: HTTPS with Range from a verified on-disk chunk cache.

Modules, one job each: ``settings`` (environment), ``ranges`` (RFC 9110 Range
parsing), ``tls`` (key, CSR, server context), ``control_plane`` (API client),
``manifests`` (manifest cache), ``origin`` (S3 fetches), ``cache`` (the chunk cache
all workers share), ``server`` (HTTP app), ``heartbeat`` (heartbeat and pulled work),
``identity`` (registration and renewal), ``main`` (the node agent), ``workers``
(starting and watching worker processes), ``worker`` (one serving process),
``node_state`` (what the agent tells its workers), ``logs`` (JSON log lines).
"""
