"""The sync API between the appliance and the central cloud (DESIGN.md §5.3).

The contract is ``sync.cddl``."""
