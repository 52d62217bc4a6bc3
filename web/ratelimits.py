"""Rate-limit values read from settings at request time (so tests and operators can change them)."""

from config import get_settings


def submit_limit() -> str:
    return get_settings().ratelimit_submit


def signup_limit() -> str:
    return get_settings().ratelimit_signup


def login_limit() -> str:
    return get_settings().ratelimit_login


def batch_limit() -> str:
    return get_settings().ratelimit_batch


def redeliver_limit() -> str:
    return get_settings().ratelimit_redeliver
