"""E1 spans: the span and channel model and its backends, ``sim`` (DESIGN.md §5.2) and ``dahdi``."""
