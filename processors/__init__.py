"""The stream roles: the router, the delivery workers and the log sink."""
