"""fsnode's infrastructure: the CDK constructs and the stack that wires them.

Nothing here imports ``functions``, ``edge_node`` or ``fsnode_core``: those folders
reach the cloud as assets (the Chalice package, the edge image, the Lambda layer).
"""
