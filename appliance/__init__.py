"""PoP edge appliance firmware: the control process and its protocol stacks."""

__version__ = "0.1.0"
