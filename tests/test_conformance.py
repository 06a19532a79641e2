"""Every built-in backend passes the conformance battery that backend authors get through
`pytest --kalloc-backend` (kalloc/conformance_suite.py, parametrized by kalloc.pytest_plugin)."""

from kalloc.conformance_suite import *  # noqa: F401,F403  (the battery's tests)
