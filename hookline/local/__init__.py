"""Local development tooling: the embedded Apache Kafka broker, ``hookline up`` and the demo receiver.

Nothing here runs in production; the roles never import it.
"""
