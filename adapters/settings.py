"""Runtime settings: command-line flags override environment variables (MPI_*), which
override the embedded defaults (SQLite file and blob folder under ./var/)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Built once by the composition root and passed down; nothing reads the environment
    anywhere else."""

    model_config = SettingsConfigDict(env_prefix="MPI_", extra="ignore")

    host: str = "127.0.0.1"
    mllp_port: int = Field(2575, ge=0, le=65535)
    http_port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("var")
    database_url: str | None = None
    authorities: Path = DEFAULT_AUTHORITIES_FILE
    default_charset: str = "utf-8"
    mllp_max_message_bytes: int = Field(1_048_576, ge=4096)
    mllp_idle_timeout: float = Field(300.0, gt=0)
    notify_interval: float = Field(1.0, gt=0)
    dispatch_interval: float = Field(0.5, gt=0)
    notify_timeout: float = Field(10.0, gt=0)
    notify_max_backoff: float = Field(300.0, gt=0)
    workers: int | None = Field(None, ge=0, le=64)
    log_level: str = "INFO"
    dicom_port: int = Field(11112, ge=0, le=65535)
    dicom_ae_title: str = Field("VNA", min_length=1, max_length=16)
    archive_dir: Path | None = None  # blobs of the archive; default: <data_dir>/archive
    archive_fsync: bool = True
    # The legal lifecycle: establishments that keep their records longer than the legal 20
    # years after the last visit (JSON, e.g. MPI_RETENTION_YEARS='{"ICL": 30}').
    retention_years: dict[str, int] = Field(default_factory=dict)
    retention_sweep_interval: float = Field(86_400.0, gt=0)
    # Lossless compression in the background: jpeg-ls (default), jpeg2000 or rle; after how
    # many days; which modalities and SOP classes (JSON lists; empty: all).
    compress_syntax: str = "jpeg-ls"
    compress_after_days: float = Field(30.0, ge=0)
    compress_modalities: list[str] = Field(default_factory=list)
    compress_sop_classes: list[str] = Field(default_factory=list)
    compress_interval: float = Field(60.0, gt=0)
    compress_batch: int = Field(20, ge=1, le=10_000)
    # Fixity: how many stored files each pass re-reads, and how often.
    fixity_interval: float = Field(3_600.0, gt=0)
    fixity_batch: int = Field(200, ge=1, le=1_000_000)

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

    def resolved_database_url(self) -> str:
        """The database URL: MPI_DATABASE_URL, else the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mpi.sqlite3').resolve()}"
