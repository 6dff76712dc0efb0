"""The stream processing roles, one package each: ``router``, ``deliver`` and ``logsink``."""
