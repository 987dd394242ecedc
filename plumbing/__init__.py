"""Plumbing that is not model or training code: atomic files, locks, SQLite migrations, sizes,
the repository root and loopback checks. Imports nothing of the project and never paddle."""
