"""`mpi viewer install`: the OHIF viewer, fetched with npm (a pinned version of
``@ohif/app``, its prebuilt files), served by `mpi serve` on its own port."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from adapters.cli.common import CommandError, common_options, settings_of

__all__ = ["COMMANDS"]


@click.group()
def viewer() -> None:
    """The OHIF image viewer."""


@viewer.command("install")
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False),
              help="Where to install it [MPI_VIEWER_DIR, <data dir>/viewer]")
@click.option("--with-onnxruntime", is_flag=True,
              help="Keep OHIF's optional onnxruntime (136 MB, for its AI tools only)")
@common_options
@click.pass_context
def viewer_install(ctx: click.Context, folder: Path | None, with_onnxruntime: bool,
                   **options: Any) -> None:
    """Fetch the pinned OHIF version with npm into the viewer folder and write its
    app-config.js (this service's /dicomweb on the viewer's origin). `mpi serve` then serves
    it on --viewer-port. Needs npm; installing the same version again only rewrites the
    configuration."""
    from adapters.viewer.install import OHIF_PACKAGE, OHIF_VERSION, ViewerInstallError, install

    settings, _ = settings_of(ctx, **options)
    target = (folder or settings.resolved_viewer_dir()).resolve()
    started = time.monotonic()
    click.echo(f"installing {OHIF_PACKAGE}@{OHIF_VERSION} into {target} (npm)", err=True)
    try:
        done = install(target, with_onnxruntime=with_onnxruntime)
    except ViewerInstallError as exc:
        raise CommandError(exc.message) from None
    state = "installed" if done.fresh else "already installed (configuration rewritten)"
    click.echo(f"{OHIF_PACKAGE}@{done.version} {state}: {done.folder} "
               f"({done.size / 1e6:.0f} MB, {time.monotonic() - started:.1f} s)")
    if folder is not None and folder.resolve() != settings.resolved_viewer_dir():
        click.echo(f"serve it with MPI_VIEWER_DIR={target} mpi serve", err=True)


COMMANDS = (viewer,)
