"""Integration tests of the SMTP transport against aiosmtpd (issue 3)."""
