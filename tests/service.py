"""Running the whole service (`mpi serve`'s servers) in a background thread, for tests."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.serve import run_services
from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


class RunningService:
    """The service on loopback with system-chosen ports; stop() shuts it down cleanly."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.mllp_port = 0
        self.http_port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(mllp_port: int, http_port: int) -> None:
                self.mllp_port, self.http_port = mllp_port, http_port
                self._ready.set()

            await run_services(self.container, self._stop, ready)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def start(self) -> RunningService:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.container.close()

    @property
    def dicom_port(self) -> int:
        """The DICOM port (AE title VNA) the service listens on."""
        return self.container.dicom.bound_port or 0

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        host="127.0.0.1", mllp_port=0, http_port=0, data_dir=data_dir,
        database_url=database_url, notify_interval=0.05, notify_timeout=2.0,
        notify_max_backoff=0.5, dispatch_interval=0.05, workers=0, dicom_port=0,
        archive_fsync=False,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def start_service(database_url: str, data_dir: Path, **overrides: object) -> RunningService:
    container = bootstrap(make_settings(database_url, data_dir, **overrides), migrate=True)
    return RunningService(container).start()
