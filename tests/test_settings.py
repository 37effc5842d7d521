"""Settings (`settings.py`): one typed object, parsed once by bootstrap.py. Bad values name their
variable, defaults are the README's, secrets stay hidden, and nothing below bootstrap.py reads the
environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cli
from settings import PROJECT_ROOT, Settings, SettingsError
from sync.config import SyncConfig

README_DEFAULTS = {
    "STRIPE_API_BASE": "http://127.0.0.1:12111",
    "STRIPE_RATE_LIMIT": 25.0,
    "STRIPE_LINES_CHUNK": 50,
    "SYNC_MAX_ATTEMPTS": 1000,  # a backstop since issue 24; README row to update at merge
    "SYNC_RETRY_HORIZON": 86400.0,
    "ROLLUP_SHARDS": 16,
    "SYNC_BREAKER_SECONDS": 30.0,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*README_DEFAULTS, "STRIPE_API_KEY", "BILLING_LOCAL_DIR", "BILLING_SYNC_QUEUE"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_bad_value_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STRIPE_RATE_LIMIT", "abc")
    with pytest.raises(SettingsError, match="STRIPE_RATE_LIMIT"):
        Settings.from_env()


def test_the_cli_refuses_a_bad_value_with_the_variable_named(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SYNC_MAX_ATTEMPTS", "many")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stop"])
    assert exit_.value.code == 2
    assert "SYNC_MAX_ATTEMPTS" in capsys.readouterr().err


def test_defaults_are_the_readmes_and_empty_means_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STRIPE_LINES_CHUNK", "")
    s = Settings.from_env()
    fields = {name: info.validation_alias for name, info in Settings.model_fields.items()}
    by_variable = {str(alias.choices[0]): getattr(s, n) for n, alias in fields.items()}  # type: ignore[union-attr]
    for variable, default in README_DEFAULTS.items():
        assert by_variable[variable] == default, variable
    assert s.stripe_api_key.get_secret_value() == "sk_test_billing_local"
    assert s.local_dir == PROJECT_ROOT / ".local"


def test_the_variables_are_read_by_their_names(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STRIPE_RATE_LIMIT", "7.5")
    clean_env.setenv("BILLING_SYNC_QUEUE", "q-1")
    clean_env.setenv("STRIPE_API_KEY", "sk_live_secret")
    cfg = SyncConfig.from_settings(
        Settings.from_env().model_copy(
            update={"database_url": "postgresql://x/y", "redis_url": "r"}
        )
    )
    assert (cfg.rate_limit_per_second, cfg.queue) == (7.5, "q-1")
    assert "sk_live_secret" not in repr(cfg) and "sk_live_secret" not in repr(Settings.from_env())
    assert cfg.stripe_api_key.get_secret_value() == "sk_live_secret"


def test_nothing_below_cli_reads_the_environment() -> None:
    """A plain grep: only settings.py (the parser) and bootstrap.py (the root) touch os.environ."""
    reads = re.compile(r"os\.environ|os\.getenv|getenv\(")
    packages = ("gql", "models", "sync", "demo", "commands")
    offenders = [
        f"{f.relative_to(PROJECT_ROOT)}:{n}"
        for package in packages
        for f in Path(PROJECT_ROOT, package).rglob("*.py")
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if reads.search(line)
    ]
    assert offenders == []
