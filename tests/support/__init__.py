"""Helpers that start real service processes for integration tests."""
