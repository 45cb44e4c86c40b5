"""The edge app over real HTTPS against a real moto S3 server, one edge for the package
(``conftest.py``).

Files are published to S3 as the control plane publishes them (``put_file``); the
control plane itself is covered by end-to-end tests.
"""
