"""Reusable test peers run privately on loopback (Dovecot, TLS material) and their pytest fixtures.

Import as ``tests.support.<module>``; ``tests/conftest.py`` re-exports the fixtures.
"""
