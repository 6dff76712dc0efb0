"""The Avro contracts (``*.avsc``) and the one codec that reads and writes them."""
