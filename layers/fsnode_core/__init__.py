"""fsnode's shared domain library: used by the control plane and the edges alike.

It imports nothing from ``functions/``, ``edge_node/`` or ``infra/``.
"""
