"""The management API (``hookline api``): webhooks of an account, stored on the config topic."""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
