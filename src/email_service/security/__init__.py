"""Credential encryption and JWT access tokens."""
