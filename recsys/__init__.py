"""The ``recsys`` command: the composition root that wires the tiers and the local services.

Tiers never import this package; it imports them, lazily, per subcommand.
"""
