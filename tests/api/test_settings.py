"""Settings are declared once (config/__init__.py) and checked as a process starts: a wrong value
stops it with a message naming the variable and what it expects, never a traceback or a later
failure at first use. Lists are comma-separated; empty variables count as unset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import ROOT_DIR, SettingsError, get_settings, load_settings


@pytest.fixture()
def env(monkeypatch):
    """The environment, restored after the test, with the process's settings re-read on both sides."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_wrong_value_stops_the_web_role_with_a_message_naming_its_variable(tmp_path):
    environment = {**os.environ, "PORT": "abc", "DATA_DIR": str(tmp_path), "FACEAPI_ENV": "test"}
    started = subprocess.run(
        [sys.executable, "-m", "stack.serve", "web"],
        cwd=ROOT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "PORT: expected an integer, got 'abc'" in started.stderr
    assert "Traceback" not in started.stderr


def test_create_app_refuses_wrong_settings_naming_the_variable(env):
    from web import create_app

    env.setenv("WEB_WORKERS", "0")
    with pytest.raises(SettingsError, match=r"^WEB_WORKERS: expected at least 1, got '0'$"):
        create_app()


def test_every_wrong_variable_is_named_at_once(env):
    env.setenv("PORT", "70000")
    env.setenv("SIGNUP_ENABLED", "maybe")
    env.setenv("IDEMPOTENCY_KEY_HOURS", "12")
    env.setenv("MATCH_THRESHOLD", "high")
    env.setenv("RATELIMIT_LOGIN", "lots")
    env.setenv("GALLERY_INDEX_BUILD_MEMORY", "1GB; RESET ALL")
    with pytest.raises(SettingsError) as wrong:
        load_settings()
    assert str(wrong.value).splitlines() == [
        "PORT: expected at most 65535, got '70000'",
        "SIGNUP_ENABLED: expected true or false (1/0, yes/no, on/off), got 'maybe'",  # Auth
        "RATELIMIT_LOGIN: expected a rate limit such as '10/minute' or '100 per hour', got 'lots'",  # Quotas
        "MATCH_THRESHOLD: expected a number, got 'high'",
        "GALLERY_INDEX_BUILD_MEMORY: expected a size such as 512MB or 1GB, got '1GB; RESET ALL'",
        "IDEMPOTENCY_KEY_HOURS: expected at least 24, got '12'",
    ]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HNSW_EF_SEARCH", "1001"),  # pgvector refuses it at the first search
        ("BCRYPT_ROUNDS", "3"),  # bcrypt refuses it at the first password
        ("WORKER_CONCURRENCY", "0"),
        ("DET_THRESH", "1.5"),
        ("MATCH_FPIR", "-0.1"),
        ("EMBEDDED_REDIS_PORT", "0"),
        ("REAPER_INTERVAL", "0"),
    ],
)
def test_out_of_range_values_are_refused(env, variable, value):
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"^{variable}: expected .*, got '{value}'$"):
        load_settings()


def test_lists_are_comma_separated_and_hosts_lower_case(env):
    env.setenv("CORS_ORIGINS", "https://a.example, https://b.example,,")
    env.setenv("ORT_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
    env.setenv("WEBHOOK_ALLOWED_HOSTS", "Hooks.Example:*, [fd00::5]:8443")
    settings = load_settings()
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.ort_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert settings.webhook_allowed_hosts == ("hooks.example:*", "[fd00::5]:8443")


def test_a_list_and_a_number_come_from_files_and_a_wrong_one_is_named(env, tmp_path):
    (tmp_path / "origins").write_text("https://a.example,https://b.example\n")
    (tmp_path / "port").write_text("8080\n")
    env.setenv("CORS_ORIGINS_FILE", str(tmp_path / "origins"))
    env.setenv("PORT_FILE", str(tmp_path / "port"))
    env.delenv("PORT", raising=False)
    settings = load_settings()
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.port == 8080
    (tmp_path / "port").write_text("eighty\n")
    with pytest.raises(SettingsError, match=r"^PORT: expected an integer, got 'eighty'$"):
        load_settings()


def test_empty_variables_are_unset_and_defaults_follow_the_environment(env, tmp_path):
    env.setenv("PORT", "")
    env.setenv("ORT_PROVIDERS", "")
    env.setenv("JWT_SECRET_KEY", "")
    env.setenv("DATA_DIR", str(tmp_path / "data"))
    env.delenv("SIGNUP_ENABLED", raising=False)
    development = load_settings()
    assert development.port == 8000 and development.ort_providers == ("CPUExecutionProvider",)
    assert development.signup_enabled is True
    # The development secret is random, kept under DATA_DIR so tokens survive a restart.
    assert len(development.jwt_secret_key) >= 32
    assert (tmp_path / "data" / "jwt_secret").read_text() == development.jwt_secret_key
    assert load_settings().jwt_secret_key == development.jwt_secret_key

    env.setenv("FACEAPI_ENV", "production")
    production = load_settings()
    assert production.signup_enabled is False and production.jwt_secret_key == ""
    assert production.is_production


def test_paths_are_expanded_and_resolved(env, tmp_path):
    env.setenv("HOME", str(tmp_path))
    env.setenv("DATA_DIR", "~/a/../data")
    env.setenv("LFW_DIR", "~/lfw")
    settings = load_settings()
    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.lfw_dir == Path(tmp_path).resolve() / "lfw"


def test_settings_are_immutable_and_copies_are_made_explicitly():
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 1
    assert settings.model_copy(update={"port": 1}).port == 1 and settings.port != 1


def _documented_sections() -> dict[str, set[str]]:
    """docs/SETTINGS.md's variables under each `## Section` heading."""
    sections: dict[str, set[str]] = {}
    for line in (ROOT_DIR / "docs" / "SETTINGS.md").read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), set())
        elif line.startswith("| `"):
            current.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split(" | ")[0]))
    return sections


def test_the_settings_tables_name_every_setting_and_no_other():
    from config import Settings, env_variable

    documented = set().union(*_documented_sections().values())
    settings = {env_variable(field) for field in Settings.model_fields}
    assert sorted(settings - documented) == [], "settings missing from docs/SETTINGS.md's tables"
    assert sorted(documented - settings) == [], "docs/SETTINGS.md's tables name variables config does not read"


def test_the_settings_tables_follow_the_sections_of_config():
    """One table per section of config (in its order), each naming exactly that section's settings;
    every setting is in one section."""
    from config import SECTIONS, Settings, env_variable

    declared = {section.__name__: {env_variable(field) for field in section.model_fields} for section in SECTIONS}
    assert _documented_sections() == declared
    assert list(_documented_sections()) == [section.__name__ for section in SECTIONS]
    in_sections = [field for section in SECTIONS for field in section.model_fields]
    assert sorted(in_sections) == sorted(Settings.model_fields)  # each once, none outside a section


def test_defaults_that_read_other_settings_see_them():
    """SIGNUP_ENABLED's and JWT_SECRET_KEY's defaults read FACEAPI_ENV and DATA_DIR, validated first
    whatever the order of the sections."""
    assert load_settings(env="development").signup_enabled is True
    assert load_settings(env="production").signup_enabled is False
    assert load_settings(env="test").jwt_secret_key


def test_the_celery_factory_is_given_its_settings(tmp_path):
    """In a subprocess: importing workers.celery_app builds this process's Celery app."""
    code = (
        "from config import load_settings\n"
        "from workers.celery_app import make_celery\n"
        "settings = load_settings(worker_concurrency=7, reaper_interval=5)\n"
        "app = make_celery(settings=settings)\n"
        "assert app.conf.faceapi_settings is settings\n"
        "assert app.conf.worker_concurrency == 7\n"
        "assert app.conf.beat_schedule['reap-jobs']['schedule'] == 5\n"
    )
    environment = {**os.environ, "DATA_DIR": str(tmp_path), "FACEAPI_ENV": "test"}
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, env=environment, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr


def test_the_web_app_reads_the_settings_it_was_given(env):
    from web import create_app

    settings = load_settings(signup_enabled=False, ratelimit_signup="1000/minute")
    client = create_app({"TESTING": True}, settings=settings).test_client()
    refused = client.post("/api/v1/auth/signup", json={"email": "a@example.com", "password": "a long password"})
    assert refused.status_code == 403, refused.get_json()


def test_the_web_app_gives_the_domain_its_own_settings(services):
    """Password rules, image limits and the webhook guard run in domain/ with the settings of the
    app handling the request; the process's (min 10 characters, 32 px, 127.0.0.1 allowed) would
    accept all three requests."""
    from tests import images
    from tests.conftest import bearer, login, make_account, upload
    from web import create_app

    settings = load_settings(
        signup_enabled=True,
        ratelimit_signup="1000/minute",
        min_password_length=30,
        min_image_side=100,
        webhook_allowed_hosts=(),
    )
    client = create_app({"TESTING": True}, settings=settings).test_client()
    weak = client.post("/api/v1/auth/signup", json={"email": "weak@example.com", "password": "a long password"})
    assert (weak.status_code, weak.get_json()["error"]["code"]) == (400, "weak_password")
    headers = bearer(login(client, *make_account("operator"))["access_token"])

    def recognize(photo: bytes, **fields: str):
        form = {"image": upload(photo), **fields}
        answer = client.post("/api/v1/recognize", data=form, headers=headers, content_type="multipart/form-data")
        return answer.status_code, answer.get_json()["error"]["code"]

    assert recognize(images.no_face_photo((64, 64))) == (400, "image_too_small")
    hook = "http://127.0.0.1:9/hook"
    assert recognize(images.no_face_photo(), webhook_url=hook) == (400, "invalid_webhook_url")


def test_the_request_schemas_bound_fields_by_the_apps_own_settings(services):
    """top_k, max_faces and the threshold are bounded, and top_k defaulted, by the settings of the
    app validating the request, not the process's (MAX_TOP_K 50, MAX_MAX_FACES 100, 0.1..0.95)."""
    import uuid

    from domain.db import session_scope
    from domain.models import Job
    from tests import images
    from tests.conftest import bearer, login, make_account, upload
    from web import create_app

    settings = load_settings(max_top_k=3, default_top_k=2, max_max_faces=4, min_threshold=0.5, max_threshold=0.7)
    client = create_app({"TESTING": True}, settings=settings).test_client()
    headers = bearer(login(client, *make_account("operator"))["access_token"])
    assert client.post("/api/v1/galleries", json={"name": "default"}, headers=headers).status_code == 201

    def recognize(**fields: str):
        form = {"image": upload(images.no_face_photo()), **fields}
        return client.post("/api/v1/recognize", data=form, headers=headers, content_type="multipart/form-data")

    for fields, message in [
        ({"top_k": "4"}, "The field 'top_k' is invalid: Input should be less than or equal to 3."),
        ({"max_faces": "5"}, "The field 'max_faces' is invalid: Input should be less than or equal to 4."),
        ({"threshold": "0.4"}, "The field 'threshold' is invalid: Input should be greater than or equal to 0.5."),
        ({"threshold": "0.8"}, "The field 'threshold' is invalid: Input should be less than or equal to 0.7."),
    ]:
        refused = recognize(**fields)
        assert refused.status_code == 400, (fields, refused.get_json())
        assert refused.get_json()["error"] == {"code": "invalid_field", "message": message}
    accepted = recognize(top_k="3", max_faces="4", threshold="0.6")
    assert accepted.status_code == 202, accepted.get_json()
    defaulted = recognize()
    assert defaulted.status_code == 202, defaulted.get_json()
    with session_scope() as session:
        assert session.get(Job, uuid.UUID(defaulted.get_json()["job_id"])).params["top_k"] == 2


def test_worker_code_reads_the_worker_apps_settings(tmp_path):
    """In a subprocess: importing workers.celery_app builds this process's Celery app. The engine
    is built at the process's start from conf.faceapi_settings, not the process's, and the job
    tasks hand that context (settings and engine) to the pipeline."""
    code = (
        "from config import load_settings\n"
        "from workers.celery_app import _load_engine_in_child, celery_app\n"
        "from workers.context import process_context\n"
        "settings = load_settings(det_size=320)\n"
        "celery_app.conf.faceapi_settings = settings\n"
        "_load_engine_in_child()  # as worker_process_init calls it in each worker process\n"
        "context = process_context(celery_app)\n"
        "assert context.settings is settings and context.engine.settings is settings\n"
        "assert process_context(celery_app) is context  # built once, at the start\n"
    )
    environment = {**os.environ, "DATA_DIR": str(tmp_path), "FACEAPI_ENV": "test"}
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, env=environment, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
