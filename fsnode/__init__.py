"""The fsnode command line, its Python client, and the local stack."""
