"""The traps of a first hour with the service, each closed: one configuration with its
provenance, commands that say which database they open and never create an empty one by
mistake, start-up errors in one line, refusals explained in the log."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.hl7_messages import registration
from tests.integration.test_cli import environment, mpi, mpi_executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_config_show_tells_where_each_setting_comes_from(tmp_path: Path) -> None:
    config = tmp_path / "mpi.toml"
    config.write_text('http_port = 9001\nlog_format = "json"\n'
                      'database_url = "postgresql+psycopg://mpi:s3cret@db/mpi"\n',
                      encoding="utf-8")
    done = mpi("config", "show", "--format", "json", "--config", str(config),
               "--data-dir", str(tmp_path), env=environment(MPI_MLLP_PORT="3575"))
    assert done.returncode == 0, done.stderr
    shown = {row["setting"]: row for row in json.loads(done.stdout)}
    assert shown["http_port"]["value"] == "9001"
    assert shown["http_port"]["source"] == f"file ({config})"
    assert shown["mllp_port"]["value"] == "3575"
    assert shown["mllp_port"]["source"] == "environment (MPI_MLLP_PORT)"
    assert shown["data_dir"]["source"] == "flag (--data-dir)"
    assert shown["dicom_port"] == {**shown["dicom_port"], "value": "11112", "source": "default"}
    assert "s3cret" not in done.stdout and "***" in shown["database_url"]["value"]


def test_a_bad_configuration_file_is_refused_with_the_key_or_the_line(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("http_prot = 9001\n", encoding="utf-8")
    done = mpi("config", "show", "--config", str(unknown), env=environment())
    assert done.returncode == 2 and "unknown setting(s) http_prot" in done.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("http_port = 9001\nlog_level = \n", encoding="utf-8")
    done = mpi("config", "show", "--config", str(broken), env=environment())
    assert done.returncode == 2 and "line 2" in done.stderr
    bad = mpi("config", "show", env=environment(MPI_HTTP_PORT="eighty"))
    assert bad.returncode == 2 and "http_port" in bad.stderr


def test_a_bad_authorities_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "authorities.toml"
    path.write_text('[[authority]]\ncode = "GCS"\nkind = "master"\noid = "1.2.3"\n\n'
                    '[[authority]]\ncode = "CHRU"\nkind = "establishment"\n', encoding="utf-8")
    done = mpi("authorities", "--authorities", str(path), env=environment())
    assert done.returncode == 2
    assert f"{path}, line 6: [[authority]] the key 'oid' is missing" in done.stderr


def test_a_command_run_from_the_wrong_folder_creates_no_empty_index(tmp_path: Path) -> None:
    done = mpi("journal", env=environment(), cwd=tmp_path)
    assert done.returncode == 3
    assert f"database: sqlite:///{tmp_path / 'var' / 'mpi.sqlite3'}" in done.stderr
    assert "--data-dir" in done.stderr and "mpi db upgrade" in done.stderr
    assert not (tmp_path / "var").exists()
    created = mpi("db", "upgrade", env=environment(), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    listed = mpi("journal", env=environment(), cwd=tmp_path)
    assert listed.returncode == 0 and "database: sqlite:///" in listed.stderr


def test_a_port_in_use_is_one_line_naming_the_listener_and_nothing_stays_up(
        tmp_path: Path) -> None:
    ports = {"MPI_MLLP_PORT": free_port(), "MPI_DICOM_PORT": free_port()}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_port = taken.getsockname()[1]
        done = subprocess.run(
            [mpi_executable(), "serve", "--data-dir", str(tmp_path)], capture_output=True,
            text=True, timeout=60,
            env=environment(MPI_HTTP_PORT=str(http_port),
                            **{k: str(v) for k, v in ports.items()}))
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: cannot listen for HTTP on 127.0.0.1:{http_port}: the port is in "
                      "use (another `mpi serve`, or another program); choose another port "
                      "with MPI_HTTP_PORT (or its flag), or stop what uses it"]
    assert "Traceback" not in done.stderr
    with socket.socket() as again:  # the MLLP listener started first was closed
        again.bind(("127.0.0.1", ports["MPI_MLLP_PORT"]))


def test_refusals_are_explained_in_one_log_line_each(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("MPI_HTTP_PORT", "MPI_MLLP_PORT", "MPI_DICOM_PORT")}
    env = environment(MPI_DATA_DIR=str(tmp_path / "var"), MPI_LOG_FORMAT="json",
                      **{k: str(v) for k, v in ports.items()})
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([mpi_executable(), "serve"], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['MPI_HTTP_PORT']}/health",
                                       timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        message = tmp_path / "stranger.hl7"
        message.write_text(registration("CHRU", "1").replace("|CHRU|MPI|", "|NOWHERE|MPI|", 1)
                           .replace("\r", "\n"), encoding="utf-8")
        sent = mpi("hl7", "send", str(message), env=env)
        assert sent.returncode == 1 and "MSA|AR|" in sent.stdout
        requester = AE(ae_title="STORESCU")
        requester.add_requested_context(Verification)
        association = requester.associate("127.0.0.1", ports["MPI_DICOM_PORT"], ae_title="VNA")
        assert association.is_rejected
        rejection = association.acceptor.primitive
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 3)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()
    events = [json.loads(line) for line in
              (tmp_path / "serve.log").read_text(encoding="utf-8").splitlines()
              if line.startswith("{")]
    assert events, "the log is JSON, one object per line"
    hl7 = [e for e in events if e["message"].startswith("refused HL7 sender")]
    assert [(e["level"], e["sender"]) for e in hl7] == [("WARNING", "NOWHERE")]
    assert "sending_facilities" in hl7[0]["message"]
    dicom = [e for e in events if e["message"].startswith("refused DICOM association")]
    assert [(e["level"], e["calling"], e["address"]) for e in dicom] == [
        ("WARNING", "STORESCU", "127.0.0.1")]
    assert "ae_titles" in dicom[0]["message"]


def test_the_version_and_the_listings_in_json(tmp_path: Path) -> None:
    version = mpi("--version", env=environment())
    assert version.returncode == 0 and version.stdout.startswith("mpi, version ")
    listing = mpi("authorities", "--format", "json", env=environment())
    document = json.loads(listing.stdout)
    assert {a["code"] for a in document["authorities"]} >= {"CHRU", "ICL", "MRUN", "CCEG"}
    assert mpi("db", "upgrade", "--data-dir", str(tmp_path), env=environment()).returncode == 0
    for command in (("journal",), ("review", "list"), ("audit",), ("jobs",), ("model",)):
        done = mpi(*command, "--format", "json", "--data-dir", str(tmp_path), env=environment())
        assert done.returncode == 0, (command, done.stderr)
        json.loads(done.stdout)
