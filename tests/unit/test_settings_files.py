"""Every setting may come from a file: NAME_FILE is read when NAME is unset (Docker and Kubernetes
secrets are files). NAME wins when both are set; an unreadable file is an error that names it."""

from __future__ import annotations

import pytest

from config import load_settings


@pytest.fixture()
def clean_env(monkeypatch):
    for name in ("DATABASE_URL", "JWT_SECRET_KEY", "WORKER_CONCURRENCY", "METRICS_TOKEN", "ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    return monkeypatch


def test_a_setting_comes_from_its_file_without_the_final_newline(clean_env, tmp_path):
    (tmp_path / "database_url").write_text("postgresql://faceapi:s3cret@db:5432/faceapi\n")
    (tmp_path / "jwt").write_text("k" * 48)
    (tmp_path / "concurrency").write_text("3\n")
    (tmp_path / "admin").write_text("a password with a trailing space \n")
    clean_env.setenv("DATABASE_URL_FILE", str(tmp_path / "database_url"))
    clean_env.setenv("JWT_SECRET_KEY_FILE", str(tmp_path / "jwt"))
    clean_env.setenv("WORKER_CONCURRENCY_FILE", str(tmp_path / "concurrency"))
    clean_env.setenv("ADMIN_PASSWORD_FILE", str(tmp_path / "admin"))
    settings = load_settings()
    assert settings.database_url == "postgresql://faceapi:s3cret@db:5432/faceapi"
    assert settings.jwt_secret_key == "k" * 48
    assert settings.worker_concurrency == 3
    assert settings.admin_password == "a password with a trailing space "


def test_the_variable_wins_over_the_file(clean_env, tmp_path):
    (tmp_path / "token").write_text("from-file")
    clean_env.setenv("METRICS_TOKEN_FILE", str(tmp_path / "token"))
    clean_env.setenv("METRICS_TOKEN", "from-env")
    assert load_settings().metrics_token == "from-env"
    clean_env.setenv("METRICS_TOKEN", "")  # empty counts as unset
    assert load_settings().metrics_token == "from-file"


def test_an_unreadable_file_is_an_error_naming_it(clean_env, tmp_path):
    clean_env.setenv("DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match=r"DATABASE_URL_FILE: cannot read .*missing"):
        load_settings()
