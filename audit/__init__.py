"""Audit log of privileged and security-relevant actions, stored in the database it concerns."""
