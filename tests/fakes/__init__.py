"""Test doubles served over real sockets."""
