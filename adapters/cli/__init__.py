"""The `mpi` command: `mpi serve` runs the service; the other commands operate it.

Every command reads the same settings (see ``adapters/settings.py``); the settings common to
all of them may be given to `mpi` itself (``mpi --data-dir /srv/mpi journal``) or to the
command. The commands are grouped by what they operate on: the service
(``adapters/cli/service.py``), who may call it (``security.py``, ``tls.py``), identities
(``identity.py``), the archive (``archive.py``), its legal lifecycle (``lifecycle.py``), the
image viewer (``viewer.py``) and backups (``backup.py``).
"""

from __future__ import annotations

import click

from adapters.cli import archive, backup, identity, lifecycle, security, service, tls, viewer
from adapters.cli.common import common_options

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nancy-mpi", prog_name="mpi")
@common_options
def main(**options: object) -> None:
    """Master patient index and archive layer for a shared imaging archive."""


for module in (service, security, tls, identity, archive, lifecycle, viewer, backup):
    for command in module.COMMANDS:
        main.add_command(command)
