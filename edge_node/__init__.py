"""fsnode's edge server: HTTPS with Range from a verified on-disk chunk cache.

Modules, one job each: ``settings`` (environment), ``ranges`` (RFC 9110 Range
parsing), ``tls`` (key, CSR, server context), ``control_plane`` (API client),
``manifests`` (manifest cache), ``origin`` (S3 fetches), ``cache`` (chunk cache),
``server`` (HTTP app), ``heartbeat`` (heartbeat and pulled work), ``main``
(bootstrap and shutdown).
"""
