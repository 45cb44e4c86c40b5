"""fsnode's infrastructure: the CDK constructs and the stack that wires them.

Nothing here imports ``functions`` or ``edge_node``, and of ``fsnode_core`` only the
control plane's settings schema (the one the functions read back): those folders reach
the cloud as assets (the Chalice package, the edge image, the Lambda layer).
"""
