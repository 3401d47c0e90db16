"""Shared fixtures: the real Kafka broker plugin, and a settings factory for tests."""

from __future__ import annotations

pytest_plugins = ["tests.broker_fixture"]
