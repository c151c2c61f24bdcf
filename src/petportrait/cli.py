"""The command line: serve | worker | migrate | admin | demo | portrait | eval (more as the service grows)."""

from __future__ import annotations

import getpass
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from petportrait.cli_retention import (
    audit_app,
    cli_settings,
    keys_app,
    refused_start,
    retention_app,
    start_services,
    storage_app,
    sweep,
)
from petportrait.cli_transparency import verify_receipt, witness
from petportrait.settings import Settings

app = typer.Typer(
    help="petportrait: pet portraits with a data policy the code enforces.", no_args_is_help=True
)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
app.add_typer(storage_app, name="storage")
app.add_typer(keys_app, name="keys")
app.command("sweep")(sweep)
app.command("verify-receipt")(verify_receipt)
app.command("witness")(witness)


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
    from petportrait.web.pages import examples
    from petportrait.web.pages.common import preview_in_use
    from petportrait.web.server import uvicorn_options

    settings = cli_settings()
    observe(settings, service="petportrait-api")
    bind_host, bind_port = host or settings.host, port or settings.port
    settings = settings.model_copy(update={"host": bind_host, "port": bind_port})
    warning = exposure_warning(settings)
    if warning:
        logging.getLogger("petportrait.serve").warning(warning)
        typer.echo(f"WARNING: {warning}", err=True)
    with refused_start():
        application = create_app(settings)
    if preview_in_use(settings):  # the styles' examples are made now, not when someone first looks
        examples.ensure_started(settings)
    shown = "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host
    typer.echo(f"petportrait: open http://{shown}:{bind_port} in a browser (Ctrl+C stops it).", err=True)
    # logging is ours (observe): uvicorn's loggers go through it, and its access line is ours too
    uvicorn.run(
        application,
        host=bind_host,
        port=bind_port,
        log_config=None,
        access_log=False,
        **uvicorn_options(settings),
    )

def observe(settings: Settings, *, service: str) -> None:
    """Logs in the configured format (with request and job ids); traces when OTEL_EXPORTER_OTLP_* is set."""
    from petportrait.telemetry import configure_logging, configure_tracing

    configure_logging(fmt=settings.log_format, level=settings.log_level)
    if configure_tracing(service_name=service):
        logging.getLogger("petportrait.telemetry").info("exporting traces over OTLP")


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
    from petportrait.services import build_consumer

    settings = cli_settings()
    observe(settings, service="petportrait-worker")
    services = start_services(settings)
    consumer = build_consumer(services, periodic=periodic)
    consumer.run_forever()
    services.engine.dispose()


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from petportrait.db import make_engine, make_session_factory
    from petportrait.files import private_dir
    from petportrait.migrate import current, upgrade
    from petportrait.services import check_kek

    settings = cli_settings()
    private_dir(settings.data_dir)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine, settings=settings)
        with refused_start():
            check_kek(settings, make_session_factory(engine))
        typer.echo(f"database at revision {current(engine)}")
    finally:
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
    services = start_services(cli_settings(), migrate=True)
    try:
        with session_scope(services.session_factory) as session:
            user = accounts_service.create_user(
                session, email=email, password=secret, role=role_value, verified=True
            )
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


@app.command("base-model")
def base_model() -> None:
    """Say which base model this machine uses, and why (the device, its memory, or the setting)."""
    from petportrait.ml.models import pick_device, resolve_base_model

    settings = cli_settings()
    device = pick_device(settings.ml.device)
    resolved = resolve_base_model(settings.ml.base_model, device=device, models_dir=settings.models_dir)
    typer.echo(f"{resolved.source} ({resolved.family}) on {device}: {resolved.reason}")


@app.command("eval")
def eval_model(
    model_id: Annotated[str, typer.Argument(help="The model's id")],
    per_prompt: Annotated[int, typer.Option(help="Renders per prompt (DreamBench: 4)")] = 4,
    prompts: Annotated[int | None, typer.Option(help="Use the first N of DreamBench's 25 prompts")] = None,
    steps: Annotated[int, typer.Option(help="Sampling steps per render")] = 50,
    seed: Annotated[int, typer.Option(help="First seed")] = 0,
) -> None:
    """Score a model's likeness (DreamBench: DINO, CLIP-I, CLIP-T) and keep the scores on the model."""
    import json

    from petportrait.cli_retention import _services
    from petportrait.errors import ProblemError
    from petportrait.ml.likeness import LikenessUnavailable
    from petportrait.portraits.likeness import evaluate_model

    with _services() as services, services.session_factory() as session:
        try:
            score = evaluate_model(
                session,
                blobs=services.blobs,
                settings=services.settings,
                model_id=model_id,
                per_prompt=per_prompt,
                prompt_count=prompts,
                steps=steps,
                seed=seed,
            )
        except LikenessUnavailable as exc:
            typer.echo(f"likeness: absent: {exc}", err=True)
            raise typer.Exit(2) from None
        except ProblemError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(1) from None
    typer.echo(json.dumps(score, sort_keys=True))


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _photo_files(paths: list[Path]) -> list[Path]:
    """The files given, and the photos inside any folder given, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            typer.echo(f"error: no such file or folder: {path}", err=True)
            raise typer.Exit(2)
    return found


def _when(value: object) -> str:
    from datetime import datetime

    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else "(not given)"


@app.command()
def portrait(
    photos: Annotated[list[Path], typer.Argument(help="Photos of one pet, or folders of them")],
    server: Annotated[
        str, typer.Option(envvar="PETPORTRAIT_SERVER", help="The service's address")
    ] = "http://127.0.0.1:8000",
    style: Annotated[str, typer.Option(help="Style preset (GET /api/v1/styles)")] = "oil_painting",
    count: Annotated[int, typer.Option(min=1, max=8, help="How many portraits")] = 2,
    out: Annotated[Path, typer.Option(help="Folder for the portraits")] = Path("portraits"),
    name: Annotated[str | None, typer.Option(help="The pet's name (default: the folder's name)")] = None,
    species: Annotated[str, typer.Option(help="dog, cat, rabbit, bird or other")] = "dog",
    email: Annotated[
        str | None, typer.Option(envvar="PETPORTRAIT_EMAIL", help="Sign in as (asked when no token)")
    ] = None,
) -> None:
    """From photos to portraits on a running service: sign in, upload, train, render and download.

    The token comes from PETPORTRAIT_TOKEN; without it the command signs in (email and password are
    asked for, or PETPORTRAIT_EMAIL and PETPORTRAIT_PASSWORD).
    """
    import os

    from petportrait.client import Client, Job, PetportraitError

    files = _photo_files(photos)
    if not files:
        typer.echo("error: no photos (.jpg, .jpeg, .png, .webp) found", err=True)
        raise typer.Exit(2)
    pet_name = name or (photos[0].name if photos[0].is_dir() else photos[0].parent.name) or "my pet"
    client = Client(server, token=os.environ.get("PETPORTRAIT_TOKEN") or None)
    try:
        if client.token is None:
            address = email or typer.prompt("Email")
            password = os.environ.get("PETPORTRAIT_PASSWORD") or typer.prompt("Password", hide_input=True)
            client.sign_in(address, password, name="petportrait portrait")
        account = client.me()
        typer.echo(f"Signed in to {server} as {account.email}")
        pet = client.create_pet(pet_name, species=species)
        typer.echo(f"Created the pet {pet.name} ({pet.id})")
        upload = client.upload_photos(pet.id, files)
        typer.echo(f"Uploaded {upload.stored} of {len(files)} photos")
        for result in upload.results:
            if not result.stored:
                typer.echo(f"  rejected {result.filename}: {result.code} ({result.detail})")
        if upload.stored == 0:
            raise PetportraitError("photos_rejected", "None of the photos could be stored.")
        with typer.progressbar(length=100, label="Training", file=sys.stderr) as bar:
            shown = 0

            def advance(job: Job) -> None:
                nonlocal shown
                percent = int(job.fraction * 100)
                if percent > shown:
                    bar.update(percent - shown)
                    shown = percent

            model = client.train(pet.id, wait=True, on_progress=advance)
        typer.echo(f"Trained the model {model.id}" + (" (preview model)" if model.is_preview else ""))
        typer.echo(f"Rendering {count} portrait(s) in the style {style}...")
        renders = client.render(model.id, style=style, count=count, wait=True)
        out.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in pet.name.lower()).strip("-") or "pet"
        for number, render in enumerate(renders, start=1):
            target = out / f"{slug}-{style}-{number}.png"
            saved = client.download(render.id, target)
            typer.echo(f"Saved {saved.path} (licence {saved.licence_id}, manifest {saved.manifest_state})")
        photo_expiry = min((p.expires_at for p in upload.photos if p.expires_at), default=None)
        render_expiry = min((r.expires_at for r in renders if r.expires_at), default=None)
        typer.echo("The service deletes, by its data policy:")
        typer.echo(f"  the photos on {_when(photo_expiry)}")
        typer.echo(f"  the model on {_when(model.expires_at)}")
        typer.echo(f"  the portraits on {_when(render_expiry)} (your downloaded files are yours to keep)")
    except PetportraitError as exc:
        typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    finally:
        client.close()


def main() -> None:
    """Entry point of the `petportrait` command (secrets from PETPORTRAIT__..._FILE files first)."""
    import os

    from petportrait.settings import read_secret_files

    try:
        read_secret_files(os.environ)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    app()


if __name__ == "__main__":
    main()
