"""Where the project's own files are: subprocesses (trainer, exporter, model server, data check)
run from the repository root so `python -m trainer` and `python -m models.serve` resolve."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
