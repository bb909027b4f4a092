"""Benchmarks of the appliance against named peers, one ``make bench-*`` target each (see README.md)."""
