"""The ``fsnode`` command groups. Each module registers its own parsers next to its
handlers (``add_parser(sub, common)``); ``fsnode.cli`` only assembles them."""
