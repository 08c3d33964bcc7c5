"""The README's five-minute tour, command by command, as a new user runs it: in a fresh data
folder, with the commands read from README.md itself (so that the README cannot drift). Only
the ports change, to free ones, so that the tour runs beside anything else on the machine; and
the folder it runs in is a scratch one holding the checkout's fixtures, so that the files the
tour writes (viewer.json, token) stay out of the checkout."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.integration.test_cli import environment, mpi_executable

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = {"8080": "http", "2575": "mllp", "11112": "dicom"}


def tour_blocks() -> tuple[str, str]:
    """(the command that runs the service, the script of the tour) from README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- tour(?:: (\w+))? -->\n```sh\n(.*?)```", text, re.S))
    assert set(blocks) == {"serve", ""}, "README.md must hold the tour's two blocks"
    return blocks["serve"].strip(), blocks[""]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def on_ports(text: str, ports: dict[str, int]) -> str:
    for default, name in DEFAULT_PORTS.items():
        text = re.sub(rf"(?<![0-9]){default}(?![0-9])", str(ports[name]), text)
    return text


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, "mpi serve stopped"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_readme_tour_runs_as_written_in_a_fresh_data_folder(tmp_path: Path) -> None:
    serve_command, script = tour_blocks()
    assert serve_command == "mpi serve"
    ports = {name: free_port() for name in DEFAULT_PORTS.values()}
    env = environment(MPI_DATA_DIR=str(tmp_path / "var"), MPI_HTTP_PORT=str(ports["http"]),
                      MPI_MLLP_PORT=str(ports["mllp"]), MPI_DICOM_PORT=str(ports["dicom"]))
    # As the reader of the tour: the virtualenv's commands on the PATH.
    env["PATH"] = f"{Path(mpi_executable()).parent}{os.pathsep}{env.get('PATH', '')}"
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "fixtures").symlink_to(ROOT / "fixtures")
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen(serve_command.split(), cwd=folder, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        wait_healthy(ports["http"], server)
        commands = [line for line in script.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        outputs = []
        for command in commands:
            done = subprocess.run(["bash", "-c", on_ports(command, ports)], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            outputs.append(done.stdout)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
        finally:
            if server.poll() is None:
                server.kill()
            log.close()

    sent, registered, _, pix, _, _, qido, refused, audit = outputs
    assert sent.count("MSA|AA|") == 2
    assert registered == "" and json.loads((folder / "viewer.json").read_text())["client_secret"]
    assert refused.strip() == "401"
    pix_values = {p.get("valueIdentifier", {}).get("value")
                  for p in json.loads(pix)["parameter"]}
    assert "M5001" in pix_values  # the maternity's IPP of the CHRU's patient
    (study,) = json.loads(qido)
    assert study["0020000D"]["Value"] == ["1.2.250.1.999.54.100.9.1"]
    assert study["00100020"]["Value"] == ["M5001"]  # under the asker's own IPP
    assert "dicomweb" in audit and "dicom" in audit and "client:mrun-viewer" in audit
    assert (tmp_path / "var" / "mpi.sqlite3").exists()

    # The log of the tour: one line per HL7 message, per DICOM association and operation, per
    # HTTP request; nothing of the patient at INFO; none of the DICOM library's chatter.
    lines = (tmp_path / "serve.log").read_text(encoding="utf-8").splitlines()
    assert sum("hl7 message" in line and "outcome=AA" in line for line in lines) == 2
    assert any("dicom association " in line and "calling=CHRU" in line for line in lines)
    assert any("dicom C-STORE" in line and "status=0x0000" in line for line in lines)
    assert any("dicom C-FIND" in line and "calling=MRUN" in line for line in lines)
    assert any("http request" in line and "route=/dicomweb/studies" in line
               and "status=200" in line for line in lines)
    for secret in ("DUPONT", "Hélène", "HELENE", "100001", "M5001", "280015439500744",
                   "19800102", json.loads((folder / "viewer.json").read_text())["client_secret"],
                   (folder / "token").read_text().strip()):
        assert not [line for line in lines if secret in line], secret
    # The first start created the administrator and said so once, on the console.
    assert sum("created the user account 'admin'" in line for line in lines) == 1
    assert not [line for line in lines if "pynetdicom" in line]
