"""The web app's settings: the object create_app was given, read through the app, never the global.

create_app stores it in ``app.config["SETTINGS"]``; code that runs in a request (views, rate-limit
callables, error handlers) reads it here, so an app built with other settings (a test's, a
second instance's) behaves by its own.
"""

from __future__ import annotations

from flask import current_app

from config import Settings

CONFIG_KEY = "SETTINGS"


def app_settings() -> Settings:
    """The settings of the app handling the current request (or app context)."""
    return current_app.config[CONFIG_KEY]
