"""Runtime settings, one set for `mpi serve` and every command.

Where a value comes from, strongest first: a command-line flag, an environment variable
(``MPI_`` + the key in capitals), the configuration file (TOML, named by ``--config`` or
``MPI_CONFIG``; flat ``key = value`` lines with the keys below), the embedded default (an
SQLite file and a blob folder under ``./var/``). Built once by the composition root and passed
down; nothing reads the environment anywhere else. ``mpi config show`` prints every setting in
force and where it came from, secrets masked.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE
from adapters.errors import AdapterError

__all__ = ["Settings", "SettingsError", "Provenance", "load_settings", "ENV_PREFIX",
           "SECRET_KEYS", "displayed_database_url"]

ENV_PREFIX = "MPI_"
# Settings whose value is never printed or logged.
SECRET_KEYS: frozenset[str] = frozenset({"oidc_client_secret"})


class SettingsError(AdapterError):
    """A setting is wrong: an unreadable configuration file, an unknown key, a bad value."""


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The keys of the TOML configuration file, when one is named."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.values = read_config_file(path, set(settings_cls.model_fields)) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """The settings of a configuration file. Raises SettingsError for a file that cannot be
    read or is not TOML (with the line), or for a key that is not a setting."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not TOML: {exc}") from exc
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}; the settings "
                            "are listed by `mpi config show`")
    return data


class Settings(BaseSettings):
    """The service's settings. Each field's description is what `mpi config show` and the
    operations guide say of it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    config: Path | None = Field(None, description="configuration file (TOML) read for the "
                                "settings not given by a flag or the environment")
    host: str = Field("127.0.0.1", description="address the plain (not TLS) servers listen "
                      "on; loopback only, unless allow_plaintext")
    mllp_port: int = Field(2575, ge=0, le=65535, description="HL7 v2 over MLLP")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP: /health, /fhir, "
                           "/dicomweb, /api, /docs")
    dicom_port: int = Field(11112, ge=0, le=65535, description="DICOM (DIMSE)")
    dicom_ae_title: str = Field("VNA", min_length=1, max_length=16,
                                description="the archive's AE title")
    data_dir: Path = Field(Path("var"), description="data folder (SQLite file mpi.sqlite3, "
                           "the archive folder)")
    database_url: str | None = Field(None, description="SQLAlchemy URL, e.g. "
                                     "postgresql+psycopg://user@host/mpi; default: SQLite in "
                                     "the data folder")
    authorities: Path = Field(DEFAULT_AUTHORITIES_FILE, description="identifier domains, "
                              "senders, consumers, C-MOVE destinations")
    archive_dir: Path | None = Field(None, description="stored objects; default: "
                                     "<data dir>/archive")
    archive_fsync: bool = Field(True, description="flush every stored object to disk before "
                                "acknowledging it")
    archive_url: str | None = Field(None, pattern=r"^s3://[^/]+(/.*)?$", description="stored "
                                    "objects in an S3-compatible object store instead of "
                                    "archive_dir: s3://bucket/prefix (endpoint and credentials "
                                    "from the AWS_* variables)")
    default_charset: str = Field("utf-8", description="codec of HL7 messages whose MSH-18 is "
                                 "empty (latin-1 is common in France)")
    mllp_max_message_bytes: int = Field(1_048_576, ge=4096, description="larger messages get "
                                        "AR, the connection stays open")
    mllp_idle_timeout: float = Field(300.0, gt=0, description="seconds before an idle MLLP "
                                     "connection is closed")
    mllp_max_connections: int = Field(200, ge=1, le=100_000, description="MLLP "
                                      "connections open at once (spread over the worker "
                                      "processes); one more is closed at once, logged")
    dicom_max_associations: int = Field(32, ge=1, le=1_000, description="DICOM associations "
                                        "at once; one more gets A-ASSOCIATE-RJ (transient, "
                                        "local limit exceeded)")
    http_max_concurrency: int = Field(64, ge=1, le=100_000, description="HTTP requests "
                                      "answered at once (per process); one more gets 503 "
                                      "with Retry-After")
    hl7_identity_collision: Literal["warn", "refuse"] = Field(
        "warn", description="ACK of an update held for review because it describes another "
        "person: AA with a warning ERR (warn) or AE (refuse)")
    workers: int | None = Field(None, ge=0, le=64, description="HL7 worker processes; default "
                                "one per core on PostgreSQL, 0 (threads) on SQLite")
    http_workers: int | None = Field(None, ge=0, le=64, description="HTTP worker processes; "
                                     "default one per core on PostgreSQL, 0 (the main "
                                     "process answers) on SQLite")
    dispatch_interval: float = Field(0.5, gt=0, description="seconds between passes of the "
                                     "outbox dispatcher when idle")
    notify_interval: float = Field(1.0, gt=0, description="seconds between ITI-10 delivery "
                                   "passes when idle (and the base of the backoff)")
    notify_timeout: float = Field(10.0, gt=0, description="seconds to wait for an ITI-10 "
                                  "consumer's acknowledgement")
    notify_max_backoff: float = Field(300.0, gt=0, description="longest wait between two "
                                      "ITI-10 delivery attempts")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="log level (debug also shows the DICOM library's protocol "
        "messages)")
    log_format: Literal["text", "json"] = Field("text", description="text lines, or one JSON "
                                                "object per line for log collectors")

    tls_cert: Path | None = Field(None, description="the service's TLS certificate (PEM, "
                                  "the chain after it); with tls_key and tls_client_ca, "
                                  "turns the TLS listeners on")
    tls_key: Path | None = Field(None, description="the private key of tls_cert (PEM)")
    tls_client_ca: Path | None = Field(None, description="the certificate authorities (PEM) "
                                       "whose client certificates are accepted")
    tls_host: str | None = Field(None, description="address the TLS listeners listen on "
                                 "(e.g. 0.0.0.0); default: host")
    mllp_tls_port: int = Field(2576, ge=0, le=65535, description="HL7 v2 over MLLP over TLS "
                               "(client certificate required)")
    dicom_tls_port: int = Field(2762, ge=0, le=65535, description="DICOM over TLS (client "
                                "certificate required)")
    https_port: int = Field(8443, ge=0, le=65535, description="HTTPS (client certificate "
                            "optional)")
    allow_plaintext: bool = Field(False, description="let the plain MLLP, DICOM and HTTP "
                                  "listeners listen on an address other than loopback")

    public_url: str | None = Field(None, description="the service's address as its callers "
                                   "reach it (e.g. https://mpi.gcs.invalid): the tokens' issuer "
                                   "and the token endpoint's audience; default: "
                                   "http://<host>:<http port>")
    token_lifetime: int = Field(300, ge=30, le=3600, description="seconds an access token "
                                "stays valid")
    session_lifetime: int = Field(28_800, ge=300, le=86_400, description="seconds a console "
                                  "session stays valid")
    oidc_issuer: str | None = Field(None, description="an OpenID Connect provider whose "
                                    "tokens are accepted and through which people log in "
                                    "(e.g. https://keycloak.chru.invalid/realms/hospital)")
    oidc_client_id: str | None = Field(None, description="this service's client id at the "
                                       "provider (the audience of its tokens)")
    oidc_client_secret: str | None = Field(None, description="this service's secret at the "
                                           "provider (never shown)")
    oidc_audience: str | None = Field(None, description="the audience the provider's access "
                                      "tokens carry for this service; default: the client id")
    oidc_name_claim: str = Field("preferred_username", description="the claim naming the "
                                 "person")
    oidc_roles_claim: str = Field("roles", description="the claim holding the person's roles "
                                  "(dotted for a nested claim: realm_access.roles)")
    oidc_establishment_claim: str = Field("establishment", description="the claim naming the "
                                          "person's establishment (an authority code)")
    retention_years: dict[str, int] = Field(
        default_factory=dict, description="establishments that keep their records longer "
        "than 20 years after the last visit, as a table code = years (JSON in the "
        "environment, e.g. {\"ICL\": 30}); never below the legal 20")
    retention_sweep_interval: float = Field(86_400.0, gt=0, description="seconds between two "
                                            "sweeps recomputing every study's retention")
    compress_syntax: Literal["jpeg-ls", "jpeg2000", "rle"] = Field(
        "jpeg-ls", description="lossless transfer syntax of the background compression")
    compress_after_days: float = Field(30.0, ge=0, description="age of an instance, in days, "
                                       "before it is compressed")
    compress_modalities: list[str] = Field(default_factory=list, description="only these "
                                           "modalities are compressed (empty: all)")
    compress_sop_classes: list[str] = Field(default_factory=list, description="only these SOP "
                                            "classes are compressed (empty: all)")
    compress_interval: float = Field(60.0, gt=0, description="seconds between compression "
                                     "passes when idle")
    compress_batch: int = Field(20, ge=1, le=10_000, description="instances per compression "
                                "pass")
    fixity_interval: float = Field(3_600.0, gt=0, description="seconds between fixity passes")
    fixity_batch: int = Field(200, ge=1, le=1_000_000, description="stored files each fixity "
                              "pass re-reads")

    viewer_port: int = Field(8081, ge=0, le=65535, description="HTTP origin of the OHIF "
                             "viewer (served at its root) and of /dicomweb for it, when the "
                             "viewer is installed (`mpi viewer install`)")
    viewer_dir: Path | None = Field(None, description="the installed viewer (its dist folder "
                                    "and app-config.js); default: <data dir>/viewer")
    viewer_url: str | None = Field(None, description="the viewer's origin as browsers reach "
                                   "it (e.g. https://viewer.mpi.gcs.invalid); default: the "
                                   "console's host on viewer_port")
    cors_origins: list[str] = Field(default_factory=list, description="web origins (scheme, "
                                    "host and port) whose pages may call /dicomweb across "
                                    "origins (CORS); none by default, never a wildcard")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _named_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin.strip() in ("*", "null") or not origin.startswith(("http://", "https://")):
                raise ValueError(f"cors_origins names origins such as https://host:port, "
                                 f"never a wildcard: {origin!r}")
        return [origin.rstrip("/") for origin in origins]

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        given = [name for name in ("tls_cert", "tls_key", "tls_client_ca")
                 if getattr(self, name) is not None]
        if given and len(given) != 3:
            missing = sorted({"tls_cert", "tls_key", "tls_client_ca"} - set(given))
            raise ValueError(f"TLS needs tls_cert, tls_key and tls_client_ca together; "
                             f"missing: {', '.join(missing)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = init_settings().get("config") or os.environ.get(ENV_PREFIX + "CONFIG") or None
        return init_settings, env_settings, _ConfigFileSource(settings_cls,
                                                              Path(path) if path else None)

    def resolved_archive_dir(self) -> Path:
        """Where stored objects live: MPI_ARCHIVE_DIR, else the archive folder of the data
        directory."""
        return (self.archive_dir or self.data_dir / "archive").resolve()

    def hl7_workers(self, database: str) -> int:
        """Worker processes for HL7 messages: MPI_WORKERS, else one per core on PostgreSQL
        and none (threads in the main process) on SQLite, whose writers are serialized."""
        if self.workers is not None:
            return self.workers
        return 0 if database == "sqlite" else (os.cpu_count() or 1)

    def resolved_viewer_dir(self) -> Path:
        """Where `mpi viewer install` puts the viewer: MPI_VIEWER_DIR, else the viewer
        folder of the data directory."""
        return (self.viewer_dir or self.data_dir / "viewer").resolve()

    def http_worker_count(self, database: str) -> int:
        """Worker processes for HTTP: MPI_HTTP_WORKERS, else one per core on PostgreSQL and
        none (the main process answers) on SQLite, whose writers are serialized."""
        if self.http_workers is not None:
            return self.http_workers
        return 0 if database == "sqlite" else (os.cpu_count() or 1)

    def resolved_database_url(self) -> str:
        """The database URL: MPI_DATABASE_URL, else the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mpi.sqlite3').resolve()}"

    def tls_enabled(self) -> bool:
        """Whether the TLS listeners start (certificate, key and client CAs all given)."""
        return self.tls_cert is not None

    def resolved_tls_host(self) -> str:
        """Where the TLS listeners listen: MPI_TLS_HOST, else the plain listeners' host."""
        return self.tls_host or self.host

    def issuer(self) -> str:
        """The tokens' issuer: the public URL, else the HTTP listener's address."""
        return (self.public_url or f"http://{self.host}:{self.http_port}").rstrip("/")

    def sqlite_file(self) -> Path | None:
        """The SQLite file of the index, None when the database is another kind."""
        url = make_url(self.resolved_database_url())
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        return Path(url.database)


@dataclass(frozen=True)
class Provenance:
    """Where one setting's value came from: ``flag``, ``environment``, ``file`` or
    ``default``, and the flag, variable or file that gave it."""

    source: str
    origin: str


def load_settings(flags: dict[str, Any]) -> tuple[Settings, dict[str, Provenance]]:
    """The settings in force for these command-line values (None ones are absent), and where
    each came from. Raises SettingsError naming the setting, the variable or the file."""
    given = {key: value for key, value in flags.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in error["loc"]) + ": " + error["msg"] if error["loc"]
            else error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise SettingsError(f"bad setting: {problems}") from None
    path = settings.config
    in_file = read_config_file(path, set(Settings.model_fields)) if path else {}
    provenance: dict[str, Provenance] = {}
    for key in Settings.model_fields:
        variable = ENV_PREFIX + key.upper()
        if key in given:
            provenance[key] = Provenance("flag", "--" + key.replace("_", "-"))
        elif variable in os.environ:
            provenance[key] = Provenance("environment", variable)
        elif key in in_file:
            provenance[key] = Provenance("file", str(path))
        else:
            provenance[key] = Provenance("default", "")
    return settings, provenance


def displayed_database_url(url: str) -> str:
    """A database URL fit for a log or a terminal: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: show nothing of it but its kind
        return url.split(":", 1)[0] + ":…"
