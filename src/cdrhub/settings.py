"""The one settings object: every knob cdrhub has, read from ``CDRHUB_*`` and an optional TOML file.

Only the CLI and the ASGI entry point call :func:`load_settings`; everything else receives a
:class:`Settings` instance, so tests build one per case without touching the environment.
Precedence, highest first: explicit overrides (CLI flags), environment, TOML file, defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: The variable naming a TOML file to read settings from (``--config`` on the CLI wins).
CONFIG_ENV = "CDRHUB_CONFIG"


def _split_commas(value: Any) -> Any:
    """Accept ``a,b`` from the environment as well as a TOML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Effective configuration. Field descriptions are the documentation (docs/settings.md)."""

    model_config = SettingsConfigDict(env_prefix="CDRHUB_", frozen=True, extra="forbid")

    database_url: str = Field(
        "sqlite:///data/cdrhub.db",
        description="Where calls are stored: `sqlite:///path.db` (embedded, the default) or "
        "`postgresql://user@host:port/db` for several receivers on one database.",
    )
    tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated tokens accepted in the `token` header of a push. List the "
        "old and the new token together to rotate without downtime. When empty, `serve` "
        "uses (and on first start generates) the token saved in `<data_dir>/token`.",
    )
    callback_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/cc/callback"],
        description="Comma-separated URL paths that accept pushes (NXCC's own example uses "
        "`/callback`).",
    )
    allowed_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDRs allowed to push (empty: any). Others "
        "get 403 before their token is looked at.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` is "
        "believed when deciding a sender's address, for pushes and for the dashboard's "
        "sign-in brake (empty: the peer address is the sender).",
    )
    auth_failure_limit: int = Field(
        20,
        ge=1,
        description="Wrong or missing tokens from one address within the window before its "
        "further wrong tokens get 429 with `Retry-After` (a valid token always passes).",
    )
    auth_failure_window_seconds: float = Field(
        60.0, gt=0, description="The window for `CDRHUB_AUTH_FAILURE_LIMIT`, in seconds."
    )
    data_dir: Path = Field(
        Path("data"),
        description="Directory for the generated token file (and the default SQLite file).",
    )
    host: str = Field(
        "127.0.0.1",
        description="Interface `serve` listens on; use 0.0.0.0 to "
        "accept pushes from NXCC over the network.",
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port `serve` listens on.")
    public_url: str | None = Field(
        None,
        description="The base URL NXCC reaches this server at (for example "
        "`https://cdr.example.com`): printed as the callback URL at startup, and the base of "
        "the dashboard links in alert notifications.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest push body accepted; larger ones get 413."
    )
    auto_migrate: bool = Field(
        False,
        description="Apply pending database migrations when `serve` starts instead of refusing "
        "to run until `cdrhub db upgrade` has been run.",
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone of the call center (for example `Asia/Shanghai`): day and "
        "hour buckets and displayed times follow it.",
    )
    service_level_seconds: float = Field(
        20,
        ge=0,
        description="Service level threshold: a queued call answered within this many seconds "
        "counts towards `service_level` (the 20 of an 80/20 target). Per request: `sl_seconds`.",
    )
    service_level_target: float = Field(
        0.8,
        ge=0,
        le=1,
        description="The service level the call center aims for, from 0 to 1 (the 80 of an "
        "80/20 target): the dashboard draws it as a line on the service level chart, and the "
        "wallboard shows `service_level` against it, red below it.",
    )
    short_abandon_seconds: float = Field(
        5,
        ge=0,
        description="Abandoned calls that waited less than this many seconds are short "
        "abandons, left out of `abandon_rate` and `service_level`. Per request: "
        "`short_abandon_seconds`.",
    )
    stats_cache_mb: int = Field(
        128,
        ge=0,
        description="Memory, in MB, for statistics snapshots already read and decoded, so "
        "repeated reports and the dashboard skip the database for hours that did not change "
        "(about 75 MB per million calls; 0 turns it off).",
    )
    keep_freed_memory_mb: int = Field(
        256,
        ge=0,
        description="Freed memory, in MB, the process keeps for reuse instead of giving it "
        "back to the system (glibc only). Statistics allocate and free arrays of many MB per "
        "report, and faulting their pages in again each time was a large part of a report's "
        "time; the cost is resident memory held after the largest report. 0: allocator "
        "defaults.",
    )
    batch_max: int = Field(
        512, ge=1, description="Most pushes stored by one database commit (group commit)."
    )
    sqlite_busy_timeout_ms: int = Field(
        5000,
        ge=0,
        description="How long a write waits for another process's lock on the SQLite file "
        "before the push is answered 503 (NXCC retries).",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning or error.")
    log_pushes: bool = Field(
        False,
        description="Log one INFO line for every push answered 200 (call id, outcome, "
        "latency). Off: such lines are at debug level, and a summary line a minute says how "
        "many pushes arrived and how they were answered; refused pushes are always logged as "
        "warnings. A line a push costs about a tenth of what one process can take.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text` for people, `json` for log pipelines: one object per line, push "
        "lines with request_id, status, result, call_id, client and latency_ms.",
    )
    spool: bool = Field(
        True,
        description="While the database cannot store a push, sync it to a local spool file "
        "and answer 200; the spool is moved into the database when it is back. Off: 503.",
    )
    spool_dir: Path | None = Field(
        None, description="Where spool files live (default: `<data_dir>/spool`)."
    )
    journal: bool = Field(
        False,
        description="Answer a push 200 (`accepted`) once it is synced to an append-only "
        "journal, and store it in the database moments later from a background applier "
        "(docs/ingest.md). Off: the 200 waits for the database commit.",
    )
    journal_applier: Literal["process", "thread"] = Field(
        "process",
        description="Where the journal is applied to the tables: `process`, a process of its "
        "own beside each server process (it takes another core instead of the server's), or "
        "`thread`, inside the server process (where processes cannot pass files: Windows).",
    )
    journal_dir: Path | None = Field(
        None, description="Where journal files live (default: `<data_dir>/journal`)."
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection whose request headers have not arrived this long after it "
        "opened (or after the request's first byte) is closed: slow or silent clients cannot "
        "hold connections forever.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A push whose body has not fully arrived this long after its headers is "
        "answered 408 (and what arrived is quarantined).",
    )
    silence_alert_minutes: float = Field(
        0,
        ge=0,
        description="Mark the service degraded (in /readyz and the metrics) and log a warning "
        "when no push was accepted for this many minutes within business hours; 0 turns it off.",
    )
    alert_evaluate_seconds: float = Field(
        60,
        ge=0,
        description="How often `serve` evaluates the alert rules (`cdrhub alert`); 0 turns "
        "the evaluation off.",
    )
    alert_repeat_minutes: float = Field(
        60,
        ge=0,
        description="A rule that keeps firing is announced again at most this often; 0: only "
        "when it starts firing and when it resolves.",
    )
    business_hours: str = Field(
        "00:00-24:00",
        pattern=r"^\d\d:\d\d-\d\d:\d\d$",
        description="Hours, in `timezone`, when silence counts (e.g. `08:00-20:00`).",
    )
    business_days: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        description="Comma-separated days when silence counts (e.g. `mon,tue,wed,thu,fri`).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, `GET /metrics` needs `Authorization: Bearer <this token>`.",
    )
    retention_days: int = Field(
        0,
        ge=0,
        description="When above 0, `serve` deletes calls (and raw versions, quarantine "
        "entries) older than this many days, once a day; 0 keeps everything.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes. Each has its own group-commit writer; on SQLite they "
        "take turns on the file's write lock.",
    )
    shutdown_grace_seconds: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM/SIGINT, how long in-flight pushes get to finish (their commits "
        "included) before the server exits.",
    )

    session_secret: SecretStr | None = Field(
        None,
        description="Signs the dashboard's session cookies (default: generated on first "
        "start into `data_dir`/session.key). Changing it signs everyone out.",
    )
    nxcc_gateway: str = Field(
        "https://api2.nxcloud.com",
        description="NXCC's API gateway for `backfill` and `reconcile` (regional ones: "
        "https://api-hk.nxlink.ai, https://chl-api.nxlink.ai, https://api-idn.nxlink.ai).",
    )
    nxcc_access_key: SecretStr | None = Field(
        None, description="NXCC API access key, for pulling call logs back (`backfill`)."
    )
    nxcc_access_secret: SecretStr | None = Field(
        None, description="NXCC API access secret, which signs each pull. Never logged."
    )
    nxcc_rate: float = Field(
        5.0, gt=0, description="At most this many requests per second to NXCC's query API."
    )
    nxcc_timeout_seconds: float = Field(
        15.0, gt=0, description="How long one request to NXCC's query API may take."
    )
    nxcc_retries: int = Field(
        5,
        ge=0,
        description="Retries (backoff with jitter) of a pull that timed out, could not "
        "connect, or got 429 or 5xx.",
    )
    reconcile_every_minutes: float = Field(
        0,
        ge=0,
        description="When above 0, `serve` reconciles with NXCC this often (needs the NXCC "
        "key and secret), so an outage longer than NXCC's retry hour heals itself.",
    )
    reconcile_window_hours: float = Field(
        3, gt=0, description="How far back each scheduled reconcile looks."
    )
    forward: bool = Field(
        True,
        description="Deliver events to the forwarding destinations from `serve` (false: only "
        "`cdrhub forward run` delivers, for those who run delivery apart from ingest).",
    )
    forward_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs that forwarding destinations may resolve to "
        "(empty: any address, since destinations are usually internal systems).",
    )
    forward_retry_schedule: str = Field(
        "5s,5m,30m,2h,5h,10h,10h",
        description="Waits between delivery attempts (after the first, immediate one); after "
        "the last the event is dead-lettered. Each wait gets +-20% jitter.",
    )
    forward_auto_pause_hours: float = Field(
        120,
        gt=0,
        description="A destination whose every attempt has failed for this long is paused "
        "(`cdrhub forward resume NAME` starts it again).",
    )
    forward_keep_days: float = Field(
        7,
        gt=0,
        description="Events delivered everywhere stay this long in the outbox (for replay and "
        "`forward add --from`), then `serve` prunes them.",
    )
    forward_attempts_keep_days: float = Field(
        14, gt=0, description="How long delivery attempts are kept for `forward attempts`."
    )

    @field_validator(
        "tokens",
        "callback_paths",
        "allowed_ips",
        "trusted_proxies",
        "business_days",
        "forward_networks",
        mode="before",
    )
    @classmethod
    def _lists_from_commas(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("callback_paths")
    @classmethod
    def _paths_are_absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*", path):
                raise ValueError(f"callback path {path!r} must start with '/', e.g. /cc/callback")
        if not value:
            raise ValueError("at least one callback path is needed, e.g. /cc/callback")
        return value

    @field_validator("allowed_ips", "trusted_proxies", "forward_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"{cidr!r} is not an address or CIDR such as 203.0.113.0/24"
                ) from None
        return value

    @field_validator("business_days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        for day in value:
            if day.strip().lower()[:3] not in days:
                raise ValueError(f"{day!r} is not a day; use mon, tue, wed, thu, fri, sat, sun")
        return value

    @field_validator("nxcc_gateway")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        """Refused here, not at the first pull: a URL without its scheme would otherwise be
        retried as a network error, and a malformed one end in a traceback."""
        example = "such as https://api2.nxcloud.com"
        try:  # urllib, not httpx: this runs at every start, and a server may never pull
            url = urlsplit(value)
            url.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL ({exc}); use one {example}") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} must be an https:// (or http://) URL {example}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai"
            ) from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("log level must be debug, info, warning or error")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def journal_directory(self) -> Path:
        """Where this receiver's push journal files are."""
        return self.journal_dir or self.data_dir / "journal"

    @property
    def spool_directory(self) -> Path:
        """Where this receiver's spool files are."""
        return self.spool_dir or self.data_dir / "spool"

    @property
    def token_file(self) -> Path:
        """Where the generated token lives when ``tokens`` is not configured."""
        return self.data_dir / "token"

    @property
    def session_key_file(self) -> Path:
        """Where the generated session secret lives when ``session_secret`` is not set."""
        return self.data_dir / "session.key"

    def origin(self, name: str) -> str:
        """Which source set the setting ``name``: the environment, the config file (its
        path), or the command line; for saying where a secret in effect comes from without
        showing it. Only meaningful for a setting that has a value."""
        variable = f"CDRHUB_{name.upper()}"
        if any(k.upper() == variable and v.strip() for k, v in os.environ.items()):
            return f"the environment ({variable})"
        toml_file = type(self).model_config.get("toml_file")
        if isinstance(toml_file, str | Path) and Path(toml_file).is_file():
            with Path(toml_file).open("rb") as handle:
                if name in tomllib.load(handle):
                    return f"the config file {Path(toml_file).resolve()} ({name})"
        return "the command line"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``CDRHUB_*`` variables, for worker processes to read back."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            if name == "tokens":
                value = ",".join(t.get_secret_value() for t in self.tokens)
            elif name in _SECRETS and getattr(self, name) is not None:
                value = getattr(self, name).get_secret_value()
            elif isinstance(value, list):
                value = ",".join(value)
            env[f"CDRHUB_{name.upper()}"] = str(value)
        return env

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, every secret replaced by a mask.

        Every ``SecretStr`` field is masked, whatever its name, so a new secret setting
        cannot be printed by forgetting a list; URLs lose their passwords.
        """
        values = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values[name] = mask_secret(value.get_secret_value())
            elif isinstance(value, list) and any(isinstance(v, SecretStr) for v in value):
                values[name] = [mask_secret(v.get_secret_value()) for v in value]
        for name in ("database_url", "public_url", "nxcc_gateway"):
            if values[name] is not None:
                values[name] = mask_url(values[name])
        return values


_SECRETS = ("metrics_token", "session_secret", "nxcc_access_key", "nxcc_access_secret")

#: What any secret is shown as: none of its characters, not even its length.
MASK = "********"


def mask_secret(secret: str) -> str:
    """A secret as it may be shown: :data:`MASK`, nothing of the secret itself (its last
    characters would narrow a guess, and tell an onlooker which token is in use)."""
    del secret
    return MASK


def mask_url(url: str) -> str:
    """Hide the password in a URL (``postgresql://user:***@host/db``) and the values of query
    parameters that carry one (``?password=``, ``sslpassword=``, ``...secret=``, ``token=``).

    The user part ends at the *last* ``@`` before the query: a password with an unencoded
    ``@`` or ``/`` in it is then hidden whole, not cut at its own ``@``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, question, query = rest.partition("?")
    at = head.rfind("@")
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = f"{user}{':***' if colon else ''}{head[at:]}"
    query = _SECRET_QUERY.sub(r"\1***", query)
    return f"{scheme}{sep}{head}{question}{query}"


_SECRET_QUERY = re.compile(r"((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*", re.I)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the environment (and a TOML file from ``config_file`` or ``CDRHUB_CONFIG``).

    ``overrides`` are explicit values, such as CLI flags, and win over everything else.
    """
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    cls: type[Settings] = Settings
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        cls = type(
            "FileSettings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": path}},
        )
    return cls(**{k: v for k, v in overrides.items() if v is not None})
