"""Fixtures of the change-log tests (issue 12): the write-back tests' app, quiet context and client over the
session's database and Dovecot (re-exported from :mod:`tests.integration.writeback.conftest`)."""

from __future__ import annotations

from tests.integration.writeback.conftest import app, quiet_client, quiet_ctx  # noqa: F401  (fixtures)
