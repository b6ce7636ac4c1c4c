"""Operations: structured request logs, idempotency keys, backup/restore and the privacy export."""
