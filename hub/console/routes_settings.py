"""Console pages: settings."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from fastapi import APIRouter

router = APIRouter()
