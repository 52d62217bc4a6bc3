"""Rate-limit values read from the app's settings at request time (an app built with other
settings, or a test that changes them, gets its own limits)."""

from web.settings import app_settings


def submit_limit() -> str:
    return app_settings().ratelimit_submit


def signup_limit() -> str:
    return app_settings().ratelimit_signup


def login_limit() -> str:
    return app_settings().ratelimit_login


def batch_limit() -> str:
    return app_settings().ratelimit_batch


def redeliver_limit() -> str:
    return app_settings().ratelimit_redeliver
