"""One construct per concern; each takes keyword-only props and exposes its resources."""
