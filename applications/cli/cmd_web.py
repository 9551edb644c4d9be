"""CLI commands of the review app: ``burnscope web`` and ``burnscope web users add|remove|list``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .options import CONFIG_OPT, MODEL_OPT, fail

web_app = typer.Typer(
    help="The clinician review app and REST API (FastAPI + uvicorn). Needs a user: `burnscope web users add`.",
    invoke_without_command=True,
    no_args_is_help=False,
)
users_app = typer.Typer(help="Manage the review app's local users (argon2-hashed passwords).", no_args_is_help=True)
web_app.add_typer(users_app, name="users")

_USERS_OPT = typer.Option(
    None, "--users-file", help="Users file (default: web.users_file, $BURNSCOPE_WEB_USERS or ~/.config/burnscope/web-users.json)."
)


def _users_path(users_file: Optional[Path]) -> Path:
    from burnscope.applications.review.settings import default_users_file

    return users_file or default_users_file()


@web_app.callback()
def web(
    ctx: typer.Context,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Report folder to review (and where reviews and uploads go)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1: this machine only)."),
    port: Optional[int] = typer.Option(None, "--port", help="TCP port (default 8080)."),
    config: Optional[Path] = CONFIG_OPT,
    users_file: Optional[Path] = _USERS_OPT,
    api_token_file: Optional[Path] = typer.Option(None, "--api-token-file", help="API tokens, one a line: TOKEN [viewer|clinician [Family^Given]]."),
    model: Optional[str] = MODEL_OPT,
    model_config: Optional[str] = typer.Option(None, "--model-config", help="Architecture config name (engines/configs)."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="TLS certificate (PEM): serve HTTPS, Secure cookies."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="TLS private key (PEM)."),
) -> None:
    """Serve the review app on OUTPUT's reports: worklist, image, body chart, review; REST API at /api/v1, OpenAPI at /docs."""
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        fail("missing option -o/--output (the report folder)")
    from burnscope.applications.review.auth import AuthError, TokenStore, UserStore
    from burnscope.applications.review.settings import SettingsError, load_web_settings

    overrides = {
        "web": {"host": host, "port": port, "users_file": str(users_file) if users_file else None,
                "api_token_file": str(api_token_file) if api_token_file else None,
                "tls": {"certfile": str(certfile) if certfile else None, "keyfile": str(keyfile) if keyfile else None}},
        "inference": {"model_config": model_config},
    }
    try:
        settings = load_web_settings(config, overrides)
    except SettingsError as exc:
        fail(str(exc))
    web_settings = settings["web"]
    if output.exists() and not output.is_dir():
        fail(f"{output} is not a folder")
    users = UserStore(web_settings.get("users_file") or _users_path(None))
    try:
        tokens = TokenStore(web_settings.get("api_token_file"))
        n_users = len(users.users())
    except AuthError as exc:
        fail(str(exc))
    if n_users == 0 and len(tokens) == 0:
        fail(f"no users in {users.path} and no API tokens: add one with `burnscope web users add NAME --role clinician`")
    tls = web_settings["tls"]  # the schema checked that certfile and keyfile come together
    bind = web_settings["host"]
    if bind not in ("127.0.0.1", "localhost", "::1") and not tls.get("certfile"):
        typer.echo(f"warning: serving on {bind} without TLS; passwords and reports cross the network in clear text", err=True)

    from burnscope.applications.review.server import create_app
    from burnscope.applications.review.service import ReviewService

    typer.echo("loading the model (once) …", err=True)
    if model:
        from burnscope.applications.burn_triage.app import build_components

        components = build_components(settings, model=model)
    else:
        components = None
    service = ReviewService(settings, output, components=components)
    if service.demo:
        from burnscope.common.messages import DEMO_BANNER

        typer.echo(f"warning: {DEMO_BANNER}", err=True)
    app = create_app(service, users, tokens, secure_cookies=bool(tls.get("certfile")))
    import uvicorn

    scheme = "https" if tls.get("certfile") else "http"
    typer.echo(f"burnscope review on {scheme}://{bind}:{web_settings['port']}/ (reports in {output}); Ctrl-C stops", err=True)
    try:
        uvicorn.run(
            app,
            host=bind,
            port=int(web_settings["port"]),
            ssl_certfile=tls.get("certfile"),
            ssl_keyfile=tls.get("keyfile"),
            proxy_headers=bool(web_settings.get("forwarded_allow_ips")),
            forwarded_allow_ips=web_settings.get("forwarded_allow_ips"),
            log_level="info",
            server_header=False,
        )
    finally:
        service.close()


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (lower-case letters, digits, . _ -)."),
    role: str = typer.Option(..., "--role", help="viewer (read only) or clinician (may verify)."),
    person_name: str = typer.Option("", "--name", help="DICOM person name, Family^Given: the Verifying Observer of what this user signs."),
    organization: str = typer.Option("", "--organization", help="Verifying Organization."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input (first line)."),
    replace: bool = typer.Option(False, "--replace", help="Change an existing user's password, role or name."),
    users_file: Optional[Path] = _USERS_OPT,
) -> None:
    """Add a user (the password is asked twice, or read with --password-stdin)."""
    from burnscope.applications.review.auth import AuthError, UserStore

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    store = UserStore(_users_path(users_file))
    try:
        store.add(name, password, role, person_name=person_name, organization=organization, replace=replace)
    except AuthError as exc:
        fail(str(exc))
    typer.echo(f"user {name} ({role}) saved in {store.path}")


@users_app.command("remove")
def users_remove(name: str = typer.Argument(..., help="User name."), users_file: Optional[Path] = _USERS_OPT) -> None:
    """Remove a user; their open sessions end with their next request."""
    from burnscope.applications.review.auth import AuthError, UserStore

    store = UserStore(_users_path(users_file))
    try:
        removed = store.remove(name)
    except AuthError as exc:
        fail(str(exc))
    if not removed:
        fail(f"no user {name!r} in {store.path}", code=1)
    typer.echo(f"user {name} removed from {store.path}")


@users_app.command("list")
def users_list(users_file: Optional[Path] = _USERS_OPT) -> None:
    """List user names and roles (never hashes)."""
    from burnscope.applications.review.auth import AuthError, UserStore

    store = UserStore(_users_path(users_file))
    try:
        users = store.users()
    except AuthError as exc:
        fail(str(exc))
    for name, record in sorted(users.items()):
        typer.echo(f"{name}\t{record.get('role')}\t{record.get('person_name', '')}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``burnscope web`` (and ``web users …``) to the burnscope CLI."""
    app.add_typer(web_app, name="web")
