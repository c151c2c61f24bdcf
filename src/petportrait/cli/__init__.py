"""The command line: serve | migrate | admin | demo (and more as the service grows)."""

from __future__ import annotations

import getpass
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from petportrait.cli.retention import audit_app, cli_settings, retention_app, storage_app, sweep
from petportrait.settings import Settings

app = typer.Typer(
    help="petportrait: pet portraits with a data policy the code enforces.", no_args_is_help=True
)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
app.add_typer(storage_app, name="storage")
app.command("sweep")(sweep)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default from settings: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8000)")] = None,
) -> None:
    """Serve the web pages and the API (SQLite is migrated automatically)."""
    import uvicorn

    from petportrait.web.app import create_app

    settings = cli_settings()
    bind_host, bind_port = host or settings.host, port or settings.port
    settings = settings.model_copy(update={"host": bind_host, "port": bind_port})
    warning = exposure_warning(settings)
    if warning:
        logging.getLogger("petportrait.serve").warning(warning)
        typer.echo(f"WARNING: {warning}", err=True)
    application = create_app(settings)
    uvicorn.run(application, host=bind_host, port=bind_port, log_level="info")


def exposure_warning(settings: Settings) -> str | None:
    """A sentence when a development server listens beyond loopback (reachable by other machines)."""
    if settings.environment != "development":
        return None
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if loopback:
        return None
    return (
        f"the development environment is listening on {settings.host}, beyond this machine: it has a "
        "placeholder secret key, open API docs and /metrics, and no HTTPS. Bind 127.0.0.1, or run with "
        "PETPORTRAIT__ENVIRONMENT=production and its required settings (base_url, secret_key, "
        "metrics_token) to serve other machines. Requests naming a host outside security.allowed_hosts "
        "are refused."
    )


@app.command()
def worker(
    periodic: Annotated[
        bool, typer.Option(help="Take part in running periodic tasks (reaper, sweeper)")
    ] = True,
) -> None:
    """Run a job consumer, one job at a time (one per GPU); SIGTERM finishes the job, twice hands it back."""
    import logging

    from petportrait.services import build_consumer, build_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services = build_services(cli_settings())
    consumer = build_consumer(services, periodic=periodic)
    consumer.run_forever()
    services.engine.dispose()


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from petportrait.db import make_engine
    from petportrait.migrate import current, upgrade

    settings = cli_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    typer.echo(f"database at revision {current(engine)}")
    engine.dispose()


@admin_app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Email address")],
    role: Annotated[str, typer.Option(help="user, support, marketing, trust_safety or admin")] = "user",
    password: Annotated[
        str | None, typer.Option(help="Password (asked for when omitted; or env PETPORTRAIT_PASSWORD)")
    ] = None,
) -> None:
    """Create an account with a role."""
    import os

    from petportrait.accounts import service as accounts_service
    from petportrait.accounts.models import Role
    from petportrait.db import session_scope
    from petportrait.errors import ProblemError
    from petportrait.services import build_services

    try:
        role_value = Role(role)
    except ValueError:
        typer.echo(f"error: unknown role {role!r}; use one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    secret = password or os.environ.get("PETPORTRAIT_PASSWORD")
    if not secret:
        if not sys.stdin.isatty():
            typer.echo("error: give --password or PETPORTRAIT_PASSWORD when not on a terminal", err=True)
            raise typer.Exit(2)
        secret = getpass.getpass("Password: ")
    if len(secret) < 10:
        typer.echo("error: the password must have at least 10 characters", err=True)
        raise typer.Exit(2)
    services = build_services(cli_settings(), migrate=True)
    try:
        with session_scope(services.session_factory) as session:
            user = accounts_service.create_user(session, email=email, password=secret, role=role_value)
            typer.echo(f"created {user.email} ({user.role}) id={user.id}")
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    finally:
        services.engine.dispose()


@app.command()
def demo(
    photos: Annotated[Path, typer.Argument(help="A folder of photos of one pet")],
    out: Annotated[Path, typer.Option(help="Where to write the PNGs")] = Path("demo-out"),
    species: Annotated[str, typer.Option(help="dog, cat, rabbit, bird or other")] = "dog",
    style: Annotated[list[str] | None, typer.Option(help="Style preset(s); default: a few")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps")] = None,
    seed: Annotated[int, typer.Option(help="Seed")] = 0,
) -> None:
    """Train on a folder of photos and render a few styles (the preview model when none is configured)."""
    from petportrait.ml.demo import run_demo

    settings = cli_settings()
    paths = run_demo(
        photos_dir=photos,
        out_dir=out,
        models_dir=settings.models_dir,
        base_model=settings.ml.base_model,
        device=settings.ml.device,
        styles=style,
        steps=steps,
        species=species,
        seed=seed,
    )
    for path in paths:
        typer.echo(str(path))


def main() -> None:
    """Entry point of the `petportrait` command."""
    app()


if __name__ == "__main__":
    main()
