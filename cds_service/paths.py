"""Where the service finds its knowledge: the rules and card templates shipped with it."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .settings import Settings

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """A top-level data folder (rules, cards): inside an installed wheel, or the source tree."""
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"the bundled '{name}' folder is missing from the installation; reinstall the package "
        f"or set CDS_{name.upper()}_DIR"
    )


def rules_dir(settings: Settings) -> Path:
    return settings.rules_dir or bundled_dir("rules")


def cards_dir(settings: Settings) -> Path:
    return settings.cards_dir or bundled_dir("cards")
