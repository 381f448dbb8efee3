"""Reusable test peers (real servers run privately on loopback) and their pytest fixtures.

Import as ``support.<module>`` with ``tests/`` on ``sys.path`` (pytest puts it there for ``tests/conftest.py``).
"""
