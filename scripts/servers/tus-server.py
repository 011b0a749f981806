#!/usr/bin/env python3
"""Minimal tus 1.0 test server (tuspyserver 4.4.3 + FastAPI + uvicorn).

Usage:
    python3 tus-server.py --port N --dir D [--strict]

Needs: pip install tuspyserver==4.4.3 uvicorn fastapi   (e.g. in a venv)

Serves the tus endpoint at http://127.0.0.1:N/files/ (POST /files/ creates,
HEAD/PATCH/DELETE /files/<32-hex-id>, OPTIONS /files/) and stores uploads
in D (created if missing). The listening socket is bound *before* the line
`ready` is printed to stdout (and flushed), so a caller can wait for that
line instead of polling the port; connections made right after it queue in
the backlog until uvicorn accepts them. Nothing else goes to stdout; uvicorn's
logs go to stderr. Stop it with SIGTERM or SIGINT.

Files in D (tuspyserver's local storage):
    D/<id>        the upload's bytes, appended as they arrive (this is the
                  finished file once Upload-Offset == Upload-Length)
    D/<id>.info   JSON: metadata (decoded Upload-Metadata, e.g. filename),
                  size, offset, expires, ...
    D/.locks/     per-upload lock files
<id> is the last path segment of the Location returned by POST.

Quirks of tuspyserver 4.4.3 worth knowing in tests:
  * HEAD on a non-partial upload answers 400 unless the upload was created
    with BOTH `filename` and `filetype` in Upload-Metadata (or name/type).
    This launcher works around it: on POST it appends the missing key(s)
    (filename "upload", filetype "application/octet-stream") to
    Upload-Metadata, so they also appear in D/<id>.info. Pass --strict to
    run tuspyserver unmodified.
  * PATCH requires a Content-Length header (chunked body -> 422), and its
    body is consumed and appended *before* Tus-Resumable, Content-Type and
    Content-Length are checked, so a rejected PATCH (412/415/422) may still
    have advanced the offset.
  * No checksum extension: Upload-Checksum is ignored.
  * A second PATCH to an upload whose earlier PATCH is still being received
    waits on a lock with time.sleep() inside the event loop: the whole
    server freezes for 30 s, then that PATCH gets 503. A client resuming
    after an interrupted PATCH must make sure the old connection is closed.
  * A PATCH whose body is cut off mid-way (client disconnect) keeps the
    bytes received so far: the next HEAD shows the advanced Upload-Offset.
  * Location is absolute, built from the request's Host header
    (http://127.0.0.1:N/files/<id> when the client sends Host 127.0.0.1:N).
"""
import argparse
import base64
import socket
import sys

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router


def fill_metadata(app):
    """ASGI wrapper: on POST, add filename/filetype to Upload-Metadata if absent."""
    defaults = {"filename": ("name", b"upload"),
                "filetype": ("type", b"application/octet-stream")}

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"]
                       if k.lower() != b"upload-metadata"]
            meta = b",".join(v for k, v in scope["headers"]
                             if k.lower() == b"upload-metadata")
            keys = {kv.strip().split(b" ")[0] for kv in meta.split(b",")}
            parts = [meta] if meta.strip() else []
            for key, (alias, value) in defaults.items():
                if key.encode() not in keys and alias.encode() not in keys:
                    parts.append(key.encode() + b" " + base64.b64encode(value))
            headers.append((b"upload-metadata", b",".join(parts)))
            scope = dict(scope, headers=headers)
        await app(scope, receive, send)

    return wrapped


def count_bodies(app, log_path):
    """ASGI wrapper: appends `METHOD PATH BYTES` to log_path for every request, BYTES being the request body's
    bytes that reached the server (also when the client dropped the connection mid-body). Tests read it to tell
    how many bytes a client sent again after an interruption."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        count = 0

        async def counting():
            nonlocal count
            message = await receive()
            if message["type"] == "http.request":
                count += len(message.get("body", b""))
            return message

        try:
            await app(scope, counting, send)
        finally:
            with open(log_path, "a") as log:
                log.write(f"{scope['method']} {scope['path']} {count}\n")

    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True, help="upload storage directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--strict", action="store_true",
                    help="no Upload-Metadata workaround (see header)")
    args = ap.parse_args()

    app = FastAPI()
    app.include_router(create_tus_router(prefix="files", files_dir=args.dir))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)

    asgi = count_bodies(app if args.strict else fill_metadata(app), args.dir + "/received.log")
    config = uvicorn.Config(asgi, log_level="warning", access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    print("ready", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
