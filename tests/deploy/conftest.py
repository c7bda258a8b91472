"""Fixtures of the deployment tests: the self-signed `certificate` of the TLS tests."""

from tests.common.test_tls import certificate  # noqa: F401  (a fixture)
