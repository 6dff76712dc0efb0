"""The delivery worker role (``hookline deliver``): sign and POST tasks, retry, record every attempt.

- ``app``: the composition root; ``worker``: the consume loop and its offsets (``offsets``);
- ``handler``: one task from record to result (policy, signing, retry, DLQ);
- ``sender``: one HTTP attempt; ``exchange``: what an attempt looked like;
- ``sink``: acknowledged writes to Kafka; ``limits``: concurrency shares.
"""
