"""The control plane's logic; ``app.py`` holds routes only."""
