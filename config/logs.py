"""Log filtering shared by every process (the web app's handler in web/logs.py, the Celery worker's
and beat's handlers in workers/celery_app.py): email addresses never reach a log line."""

from __future__ import annotations

import logging
import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class RedactEmails(logging.Filter):
    """Email addresses out of every message and traceback: an error's text may quote one that no
    setting hides (PostgreSQL's `DETAIL: Key (email)=(...) already exists`). A handler's filter,
    so that it sees the records of every logger that reaches the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit: logging reports it later
            return True
        record.msg, record.args = _EMAIL.sub("<email>", message), ()
        if record.exc_info:
            record.exc_text = _EMAIL.sub("<email>", logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # formatters use exc_text, the redacted copy
        return True


def redact_emails(logger: logging.Logger) -> None:
    """Add the filter to each of the logger's handlers that lacks it."""
    for handler in logger.handlers:
        if not any(isinstance(existing, RedactEmails) for existing in handler.filters):
            handler.addFilter(RedactEmails())
