"""The sync API between the appliance and the central cloud (DESIGN.md §5.3); the contract is ``sync.cddl``."""
