from __future__ import annotations

import logging

from common.logging import RedactSecretsFilter


def test_tokens_in_access_log_paths_are_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/ws/lessons/3?token=s3cr3t-Value&x=1", "1.1", 101),
        None,
    )
    RedactSecretsFilter().filter(record)
    message = record.getMessage()
    assert "s3cr3t" not in message
    assert "/ws/lessons/3?token=***&x=1" in message
