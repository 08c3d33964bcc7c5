"""/health, /health/live and /health/ready on the running service: live while the process
answers, ready while its database does (a load balancer takes a server out of its pool on
503), on a PostgreSQL database that goes away under it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import upgrade
from tests.conftest import PostgresServer
from tests.service import start_service


def test_a_server_whose_database_goes_away_stays_live_and_stops_being_ready(
        postgres_server: PostgresServer, tmp_path: Path) -> None:
    name = f"mpi_test_{os.getpid()}_ready"
    url = postgres_server.create(name)
    engine = create_engine_for(url)
    upgrade(engine)
    engine.dispose()
    service = start_service(url, tmp_path)
    try:
        base = service.http_base
        live = httpx.get(base + "/health/live")
        assert live.status_code == 200 and live.json()["status"] == "live"
        ready = httpx.get(base + "/health/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                             "database": True}
        assert httpx.get(base + "/health").json()["status"] == "ok"

        postgres_server.drop(name)  # its connections ended, the database gone

        gone = httpx.get(base + "/health/ready")
        assert gone.status_code == 503 and gone.json() == {"status": "not-ready",
                                                           "database": False}
        assert gone.headers["retry-after"] == "5"
        assert httpx.get(base + "/health").status_code == 503
        still = httpx.get(base + "/health/live")
        assert still.status_code == 200 and still.json()["status"] == "live"
    finally:
        service.stop()
        postgres_server.drop(name)
