"""The composition root: builds every part from the settings and wires them together.

Nothing here runs at import time; ``bootstrap(settings)`` does the work when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, routing

from adapters.api.lifecycle import router as lifecycle_router
from adapters.api.metrics import router as metrics_router
from adapters.api.oauth import router as oauth_router
from adapters.api.review import router as review_router
from adapters.auth.keys import SigningKeys
from adapters.auth.oidc import OidcProvider, OidcSettings
from adapters.auth.service import AuthService
from adapters.auth.tokens import TokenService
from adapters.authorities_file import load_authorities
from adapters.console import install_login_redirect
from adapters.console import router as console_router
from adapters.container import Container, SystemClock
from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.compress import syntax_named
from adapters.dicom.lifecycle import ArchiveLifecycle
from adapters.dicom.preservation import CompressionSettings, Compressor
from adapters.dicom.service import DicomArchive
from adapters.dicom.web import DicomWeb
from adapters.dicomweb import router as dicomweb_router
from adapters.errors import AdapterError
from adapters.fhir import mount as mount_fhir
from adapters.hl7v2.application import Hl7Application
from adapters.hl7v2.notifier import PixNotifier
from adapters.http.app import Mount, create_app, service_version
from adapters.http.cross_origin import install_cross_origin
from adapters.jobs import (
    Job,
    JobBoard,
    compression_job,
    fixity_job,
    notification_job,
    outbox_job,
    retention_job,
)
from adapters.settings import Settings, SettingsError
from adapters.sql.audit import SqlAuditTrail
from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import current_revision, head_revision, upgrade
from adapters.sql.tables import sync_authorities
from adapters.sql.uow import SqlUnitOfWorkFactory
from adapters.viewer import router as viewer_router
from adapters.viewer.origin import viewer_app
from mpi.archive import ArchiveService, BlobStore
from mpi.archive.retention import RETENTION_EVENTS, RetentionPolicy, RetentionRecomputation
from mpi.authorities import AuthorityRegistry
from mpi.events import PersonIdentifiersChanged
from mpi.handlers import EventDispatcher, PixNotificationPolicy
from mpi.identity import IdentityService
from mpi.matching.engine import ProbabilisticMatcher
from mpi.matching.training import model_in_force

__all__ = ["bootstrap", "http_app", "viewer_http_app", "declared_jobs",
           "DatabaseNotReadyError"]


class DatabaseNotReadyError(AdapterError):
    """The database schema is behind the code: run `mpi db upgrade`."""


def blob_store(settings: Settings) -> BlobStore:
    """Where stored objects live: an S3 bucket when archive_url says so, else a folder."""
    if settings.archive_url:
        try:
            from adapters.dicom.s3 import S3BlobStore

            return S3BlobStore.from_url(settings.archive_url)
        except ImportError:
            raise SettingsError(f"archive_url is {settings.archive_url} but boto3, the S3 "
                                "client, is not installed: pip install -e '.[s3]'") from None
    return FilesystemBlobStore(settings.resolved_archive_dir(), fsync=settings.archive_fsync)


def bootstrap(settings: Settings, *, migrate: bool | None = None) -> Container:
    """Build the service. ``migrate`` None: migrate an SQLite database by itself, and require
    any other database to be at the current schema (raises DatabaseNotReadyError). Use the
    container as a context manager, or close it."""
    registry = load_authorities(settings.authorities)
    url = settings.resolved_database_url()
    engine = create_engine_for(url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        upgrade(engine)
    elif current_revision(engine) != head_revision():
        engine.dispose()
        raise DatabaseNotReadyError(
            f"the database schema is at {current_revision(engine)}, the code needs "
            f"{head_revision()}: run `mpi db upgrade`"
        )
    with engine.begin() as connection:
        sync_authorities(connection, registry.all)
    uow_factory = SqlUnitOfWorkFactory(engine, master_authority=registry.master.code)
    clock = SystemClock()
    with uow_factory(read_only=True) as uow:
        model = model_in_force(uow)
    national = frozenset(a.code for a in registry.all if a.is_national)
    matcher = ProbabilisticMatcher(national, model)
    identity = IdentityService(registry, clock, matcher)
    hl7 = Hl7Application(registry, identity, uow_factory, clock, settings.default_charset,
                         settings.hl7_identity_collision == "refuse")
    audit = SqlAuditTrail(engine)
    blobs = blob_store(settings)
    dicom = DicomArchive(registry, uow_factory, ArchiveService(registry, identity, blobs, clock.now),
                         blobs, audit, clock, settings.dicom_ae_title)
    policy = RetentionPolicy(settings.retention_years)
    lifecycle = ArchiveLifecycle(uow_factory, blobs, audit, clock, policy)
    compressor = Compressor(uow_factory, blobs, clock, CompressionSettings(
        syntax_named(settings.compress_syntax), settings.compress_after_days,
        tuple(settings.compress_modalities), tuple(settings.compress_sop_classes)))
    # What reacts to which event (run by the outbox job, never inside a use case).
    recompute = RetentionRecomputation(policy, clock.now)
    subscriptions: dict[Any, list[Any]] = {event: [recompute] for event in RETENTION_EVENTS}
    subscriptions.setdefault(PersonIdentifiersChanged, []).append(
        PixNotificationPolicy(registry, clock))
    dispatcher = EventDispatcher(uow_factory, clock, subscriptions)
    notifier = PixNotifier(registry, uow_factory, clock, interval=settings.notify_interval,
                           timeout=settings.notify_timeout, max_backoff=settings.notify_max_backoff)
    jobs = JobBoard(declared_jobs(settings, registry, uow_factory, dispatcher, notifier,
                                  lifecycle, compressor))
    return Container(settings, registry, engine, uow_factory, clock, matcher, identity, hl7,
                     audit, dicom, DicomWeb(dicom), dispatcher, notifier, jobs, lifecycle,
                     compressor, authentication(settings, registry, uow_factory, clock))


def authentication(settings: Settings, registry: AuthorityRegistry,
                   uow_factory: SqlUnitOfWorkFactory, clock: SystemClock) -> AuthService:
    """The service's signing keys (in the data folder), its tokens, and the identity provider
    when one is configured."""
    keys = SigningKeys(settings.data_dir / "keys")
    tokens = TokenService(keys, settings.issuer(), settings.token_lifetime, clock)
    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id:
        oidc = OidcProvider(OidcSettings(
            issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret, audience=settings.oidc_audience,
            name_claim=settings.oidc_name_claim, roles_claim=settings.oidc_roles_claim,
            establishment_claim=settings.oidc_establishment_claim))
    return AuthService(uow_factory, tokens, registry, clock, oidc,
                       session_lifetime=settings.session_lifetime)


def declared_jobs(settings: Settings, registry: AuthorityRegistry,
                  uow_factory: SqlUnitOfWorkFactory, dispatcher: EventDispatcher,
                  notifier: PixNotifier, lifecycle: ArchiveLifecycle,
                  compressor: Compressor) -> Sequence[Job]:
    """The background jobs `mpi serve` runs: the outbox dispatcher, one ITI-10 delivery job
    per consumer (a consumer that is down delays only its own), the retention sweep, the
    lossless compression of the archive and its fixity checks."""
    return [
        outbox_job(dispatcher, settings.dispatch_interval),
        *(notification_job(notifier, consumer, uow_factory, settings.notify_interval)
          for consumer in registry.consumers),
        retention_job(lifecycle, settings.retention_sweep_interval),
        compression_job(compressor, settings.compress_interval, settings.compress_batch),
        fixity_job(lifecycle, compressor, settings.fixity_interval, settings.fixity_batch),
    ]


def _routers(*routers: routing.APIRouter) -> Mount:
    def mount(app: FastAPI) -> None:
        for router in routers:
            app.include_router(router)

    return mount


def http_app(container: object) -> FastAPI:
    """The HTTP application of the service: the token endpoint, the review and lifecycle APIs,
    DICOMweb, FHIR and the console."""

    def fhir(app: FastAPI) -> None:
        mount_fhir(app, service_version())

    def console(app: FastAPI) -> None:
        app.include_router(console_router)
        install_login_redirect(app)  # after FHIR's error handlers, which it falls back on

    app = create_app(container, [_routers(oauth_router, review_router, lifecycle_router,
                                          dicomweb_router, viewer_router,
                                          metrics_router),
                                 fhir, console])
    settings = getattr(container, "settings", None)
    install_cross_origin(app, getattr(settings, "cors_origins", ()), isolated=("/dicomweb",))
    return app


def viewer_http_app(container: Any, dist: Path) -> FastAPI:
    """The viewer's origin: OHIF's files (``dist``) at its root and DICOMweb beside them."""
    return viewer_app(container, dist, [_routers(dicomweb_router)],
                      container.settings.cors_origins)
