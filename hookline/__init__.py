"""hookline's shared kernel: settings, topics, Kafka client adapters, signing, metrics, logging.

It imports neither Faust nor httpx; the roles in ``producers`` and ``processors`` build on it.
"""

from __future__ import annotations

from hookline.settings import Secret, Settings, SettingsError, load_settings

__all__ = ["Secret", "Settings", "SettingsError", "__version__", "load_settings"]

__version__ = "0.1.0"
