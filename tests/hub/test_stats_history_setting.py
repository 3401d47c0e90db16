"""``portal.stats_history_from`` as the operator meets it: errors at start-up, and ``up --scenario``."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hub.commands.up import _portal_sync_env
from hub.config import ConfigError, load_settings
from hub.scenario.thanhhoa2021 import START
from schemas.calendar import TZ

ENV = "DVC_HUB_PORTAL__STATS_HISTORY_FROM"
ENV_TO = "DVC_HUB_PORTAL__STATS_HISTORY_TO"


@pytest.mark.parametrize("month", ["2021-13", "March"])
def test_a_bad_month_stops_the_start_with_what_to_write(month: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, month)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "portal.stats_history_from" in message
    assert "YYYY-MM" in message
    assert ENV in message  # where to fix it


def test_a_scenario_hands_its_first_month_to_the_portal_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    env = _portal_sync_env(load_settings(), START)
    assert env == {ENV: "2020-01"}  # thanhhoa-2021 replays January 2020 - March 2021
    # The child reads the same configuration plus this environment: the setting arrives.
    monkeypatch.setenv(ENV, env[ENV])
    assert load_settings().portal.stats_history_from == "2020-01"


def test_a_month_the_user_chose_is_kept_and_live_traffic_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "2021-01")
    assert _portal_sync_env(load_settings(), START) == {}
    monkeypatch.delenv(ENV)
    assert _portal_sync_env(load_settings(), None) == {}


def test_the_month_is_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    # 2020-12-31 18:00 UTC is already 2021-01-01 01:00 in Vietnam.
    assert _portal_sync_env(load_settings(), datetime(2020, 12, 31, 18, tzinfo=UTC)) == {ENV: "2021-01"}
    assert _portal_sync_env(load_settings(), datetime(2021, 1, 1, tzinfo=TZ)) == {ENV: "2021-01"}


def test_a_scenario_bounds_the_history_by_its_last_month(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.scenario.thanhhoa2021 import END

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(ENV_TO, raising=False)
    env = _portal_sync_env(load_settings(), START, END)
    assert env == {ENV: "2020-01", ENV_TO: "2021-03"}  # END is 2021-04-01 00:00, after every event
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    portal = load_settings().portal
    assert (portal.stats_history_start, portal.stats_history_end) == (date(2020, 1, 1), date(2021, 4, 1))
    monkeypatch.setenv(ENV_TO, "2021-12")
    assert load_settings().portal.stats_history_end == date(2022, 1, 1)  # December rolls the year over
    monkeypatch.setenv(ENV_TO, "2021-13")
    with pytest.raises(ConfigError, match="stats_history_to"):
        load_settings()
