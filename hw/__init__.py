"""Hardware drivers behind small interfaces (hw/README.md)."""
