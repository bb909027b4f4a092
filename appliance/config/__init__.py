"""Typed configuration of the appliance: embedded defaults, TOML override, validation.

``load_config(None)`` is the configuration ``make run`` starts on; ``load_config(path)`` overrides it with a
TOML file and raises :class:`ConfigError` listing every problem when the file is not acceptable.
"""

from appliance.config.errors import ConfigError, ConfigIssue, ConfigReadError
from appliance.config.load import build_config, check_file, load_config, load_config_text
from appliance.config.schema import (
    AgentGroupConfig,
    CloudConfig,
    Config,
    Destination,
    LoggingConfig,
    MediaConfig,
    RateLimitConfig,
    RegistrarConfig,
    RouteConfig,
    ServiceListen,
    SessionTimerConfig,
    SipConfig,
    SiteConfig,
    SyncConfig,
    TimerConfig,
    UserConfig,
)

__all__ = [
    "AgentGroupConfig",
    "CloudConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ConfigReadError",
    "Destination",
    "LoggingConfig",
    "MediaConfig",
    "RateLimitConfig",
    "RegistrarConfig",
    "RouteConfig",
    "ServiceListen",
    "SessionTimerConfig",
    "SipConfig",
    "SiteConfig",
    "SyncConfig",
    "TimerConfig",
    "UserConfig",
    "build_config",
    "check_file",
    "load_config",
    "load_config_text",
]
