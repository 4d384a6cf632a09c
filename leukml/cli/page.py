"""`leukml app`: the web page in front of a registered model."""

from __future__ import annotations

import os

import click

from leukml.cli.options import config_options, friendly_errors, reader_tracking_uri
from leukml.common.console import import_backend
from leukml.common.errors import LeukmlError
from leukml.common.options import build
from leukml.serving.app.config import AppConfig
from leukml.serving.app.security import TOKEN_ENV, check_bind


class Refused(click.ClickException):
    """An unsafe start refused: one line, exit status 2 (a usage error)."""

    exit_code = 2


@click.command()
@config_options(AppConfig)
@reader_tracking_uri()
@friendly_errors
def app(tracking_uri: str, **options) -> None:
    """Serve a page where people upload cell images and see the label, p_all, Grad-CAM and the
    model's evaluation (127.0.0.1 unless a token is set)."""
    config = build(AppConfig, options)
    token = os.environ.get(TOKEN_ENV) or None
    try:
        check_bind(config.host, token)  # before the model loads
    except LeukmlError as exc:
        raise Refused(str(exc)) from None
    import_backend()
    from leukml.serving.app.page import prepare
    from leukml.serving.app.server import serve

    page = prepare(config, token, tracking_uri or None)
    alias = f" (@{page.info.alias})" if page.info.alias else ""
    click.echo(f"{page.info.name} version {page.info.version}{alias}, promoted {page.info.registered}")
    click.echo(f"open {page.address}  (Ctrl-C stops)", nl=True)
    serve(page.app, config.host, config.port)


COMMANDS = (app,)
