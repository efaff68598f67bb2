"""`photo-engine serve` (REST API + app) and `photo-engine chat` (the app, optionally shared): one server.

Both refuse to listen beyond this machine without a login, and `--share` (a public link through Gradio's
tunnel) refuses to start without `--auth`. When the tunnel cannot be reached (offline), the server says so in
one line and keeps serving locally. Registered on the main `app` when assistant.cli imports this module.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
import threading
import time
from typing import Annotated, Optional

import typer

from assistant.cli import LibraryOpt, _fail, _library, app, err

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on (anything but localhost needs a login).")]
AuthOpt = Annotated[Optional[str], typer.Option("--auth", help="USER:PASS required to use the app and the API.",
                                                envvar="PHOTO_ENGINE_AUTH", show_envvar=True)]
NoLlmOpt = Annotated[bool, typer.Option("--no-llm", help="Answer from tool results only (fast; no model load).")]


def is_local(host: str) -> bool:
    """True for loopback addresses and 'localhost' (reachable from this machine only)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(value: Optional[str]) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        _fail("--auth takes USER:PASS (both non-empty)", code=2)
    return user, password


def local_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            _fail(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another with --port", code=2)


def start_share(port: int, url: str) -> None:
    """Open a public link through Gradio's share tunnel; offline, say so once and keep serving locally."""
    from gradio.networking import setup_tunnel

    try:
        public = setup_tunnel("127.0.0.1", port, secrets.token_urlsafe(32), None, None)
    except Exception as error:  # noqa: BLE001 - any tunnel failure means "no public link", never "stop serving"
        reason = error.__cause__ or error
        detail = f"{type(reason).__name__}: {str(reason).splitlines()[0][:160]}" if str(reason) else type(reason).__name__
        print(f"share link unavailable: Gradio's share server cannot be reached ({detail}); "
              f"still serving locally at {url}", file=sys.stderr, flush=True)
        return
    print(f"public share link (login required): {public}", flush=True)


def run_server(library_path, host: str, port: int, token: str | None, basic: tuple[str, str] | None,  # type: ignore[no-untyped-def]
               share: bool, no_llm: bool, what: str) -> None:
    """Build API + app, listen, print the local URL once listening, then (with --share) try the tunnel."""
    import uvicorn

    library = _library(library_path)
    _check_port(host, port)
    err.print("loading the app…")
    from assistant.app import create_server

    server_app = create_server(library, token=token, basic_auth=basic, allow_new_sources=is_local(host) and not share,
                               llm=False if no_llm else None)
    server = uvicorn.Server(uvicorn.Config(server_app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=3))
    url = local_url(host, port)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.1)
        if not server.started:
            return
        print(f"{what} running at {url}  (API docs: {url}docs; Ctrl-C to stop)", flush=True)
        if token or basic:
            err.print("login required: " + ("the --auth user and password" if basic else "any user name, the token as password")
                      + (", or `Authorization: Bearer <token>` for the API" if token else ""))
        if share:
            start_share(port, url)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run()


def serve(library: LibraryOpt = None, host: HostOpt = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
          token: Annotated[Optional[str], typer.Option("--token", help="Bearer token required by the API (and the "
                                                                        "app's password).", envvar="PHOTO_ENGINE_TOKEN",
                                                       show_envvar=True)] = None,
          auth: AuthOpt = None, no_llm: NoLlmOpt = False) -> None:
    """The REST API (OpenAPI at /docs) and the app in one server."""
    basic = parse_auth(auth)
    if not is_local(host) and not (token or basic):
        _fail(f"refusing to serve your library on {host} without a login: add --token TOKEN or --auth USER:PASS "
              f"(or keep the default --host 127.0.0.1)", code=2)
    run_server(library, host, port, token, basic, share=False, no_llm=no_llm, what="Photo Engine API and app")


def chat(library: LibraryOpt = None, host: HostOpt = "127.0.0.1",
         port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 7860,
         share: Annotated[bool, typer.Option("--share", help="Also open a public link (Gradio tunnel); needs --auth.")] = False,
         auth: AuthOpt = None, no_llm: NoLlmOpt = False) -> None:
    """The app in the browser: chat, search, people and library pages."""
    basic = parse_auth(auth)
    if share and not basic:
        _fail("--share puts your whole library on a public link: add --auth USER:PASS so it asks for a login", code=2)
    if not is_local(host) and not basic:
        _fail(f"refusing to serve your library on {host} without a login: add --auth USER:PASS", code=2)
    run_server(library, host, port, None, basic, share=share, no_llm=no_llm, what="Photo Engine")


def _apps() -> list[typer.Typer]:
    """`app`, and under `python -m assistant.cli` also `__main__`'s copy of it (that module is loaded twice)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    other = getattr(main, "app", app) if spec is not None and spec.name == "assistant.cli" else app
    return [app] if other is app else [app, other]


for _target in _apps():
    _target.command()(serve)
    _target.command()(chat)
