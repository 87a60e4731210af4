"""`speechmesh ui`: a demo web page for the gateway.

A static page (HTML and vanilla JavaScript in `static/`, no build step) and a small standard
library HTTP server (`server.py`) that serves it and passes `/v1/...` through to the gateway, so
the browser talks to one origin and the gateway needs no CORS setting. The server also bridges
the live microphone to the gateway's streaming REST routes, which browsers cannot call with a
streaming request body over plain HTTP/1.1.
"""

from __future__ import annotations

import argparse


def _ui(args: argparse.Namespace) -> int:
    from speechmesh.ui.server import serve

    return serve(args.host, args.port, args.gateway, open_browser=args.open)


def add_commands(commands) -> None:
    """Adds `ui` to the `speechmesh` command's subparsers."""
    ui = commands.add_parser(
        "ui",
        help="a demo web page for the gateway",
        description="Serve a web page for translation, transcription, speech, the live"
        " microphone and voice cloning, talking to the gateway through this server.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8088, help="port (default 8088; 0 picks one)")
    ui.add_argument(
        "--gateway",
        default="http://localhost:8080",
        help="the gateway's REST address (default http://localhost:8080)",
    )
    ui.add_argument("--open", action="store_true", help="open the page in a browser")
    ui.set_defaults(func=_ui)
