"""The log sink role (``hookline logsink``): delivery attempts from the results topic into the log store."""
