"""Every built-in backend passes the shared conformance machine (kalloc.conformance)."""

from kalloc.conformance import machine_for

TestBump = machine_for("bump", ncpus=2).TestCase
