"""A stand-in for huggingface.co in browser tests: the Space page that frames the app, and an OpenID provider.

A Space is served over HTTPS from its own site and shown inside a page of
huggingface.co, so its cookies are third-party there. To see that in
Chromium without the network, everything runs on loopback under two names
(Chromium maps them with `--host-resolver-rules`, see `chromium_args`) and
TLS with a self-signed certificate made here (Chromium runs with
`--ignore-certificate-errors`):

- `https://space.test:<port>`: a TLS front (`TlsFront`) to the real app,
  which listens on plain HTTP, as behind a Space's own proxy;
- `https://hf.test:<port>`: `StandInHub`, whose `/spaces/<name>` page frames
  the app, and whose OpenID endpoints run the real Gradio/authlib sign-in:
  the browser is sent to `/oauth/authorize`, which signs `user` in at once;
  the app's server fetches the metadata, the token and the keys over plain
  HTTP on loopback (`provider_url`), as `OPENID_PROVIDER_URL` says.

Usage::

    with StandInHub(tmp_path) as hub:
        app = start_app(data, env={**oauth_space_env(), **hub.space_env(port)})
        hub.front_app("demo", port, app.url)          # https://space.test:<port>
        page.goto(hub.space_page_url("demo"))         # the app in a frame on "huggingface.co"
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Coroutine, Union
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from apphelpers import free_port

SPACE_HOST = "space.test"
HUB_HOST = "hf.test"
CLIENT_ID = "space-client"


def chromium_args() -> list[str]:
    """Chromium flags that send both names to loopback and accept the self-signed certificate."""
    return [f"--host-resolver-rules=MAP {SPACE_HOST} 127.0.0.1, MAP {HUB_HOST} 127.0.0.1",
            "--ignore-certificate-errors"]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for both names and 127.0.0.1; returns (certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SPACE_HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SPACE_HOST), x509.DNSName(HUB_HOST),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Loop:
    """An asyncio loop in a daemon thread; `run` waits for a coroutine on it. Not meant to be used directly."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fakeprovider", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel what still runs (relays of open connections), then stop the loop."""
        self.run(_cancel_others())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _cancel_others() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


# A front's port: a number, or a socket `hold_port()` keeps bound until the front listens on it
Port = Union[int, socket.socket]


def hold_port() -> socket.socket:
    """A loopback socket bound to a free port, held until a front listens on it (`port_of` tells the number).

    A port picked with free_port() stays unbound while the app servers start
    (10 s and more), and another process can take it meanwhile ("address
    already in use" at the front's start); a held one cannot be taken.
    """
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    return held


def port_of(port: Port) -> int:
    return port.getsockname()[1] if isinstance(port, socket.socket) else port


class TlsFront:
    """Terminates TLS on 127.0.0.1:`port` and relays the bytes to 127.0.0.1:`target` (plain HTTP).

    A byte relay: the app sees the browser's requests as they were sent
    (Host, Origin, Sec-Fetch-*), as behind a Space's proxy, but without the
    X-Forwarded-* headers that proxy adds (so Gradio builds http:// URLs
    where it uses them, such as the password mode's /logout redirect).
    """

    def __init__(self, context: ssl.SSLContext, listen: Port, target: int) -> None:
        self.context, self.listen, self.target = context, listen, target
        self.server: asyncio.AbstractServer | None = None
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if isinstance(self.listen, socket.socket):
            self.server = await asyncio.start_server(self._relay, sock=self.listen, ssl=self.context)
        else:
            self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.listen, ssl=self.context)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.open):
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:  # stop(): end quietly (asyncio logs a connection task that ends cancelled)
            writer.close()
            up_writer.close()
        finally:
            self.open -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


class TlsFronts:
    """TLS fronts (`TlsFront`) sharing one certificate and one loop thread, added and closed from test code.

    StandInHub keeps its fronts here, on its own loop; a test that only needs
    the app behind TLS (test_edge_browser.py) makes one with its own loop.
    """

    def __init__(self, cert: Path, key: Path, loop: _Loop | None = None) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self._own_loop = loop is None
        self._loop = _Loop() if loop is None else loop
        self._fronts: list[TlsFront] = []

    def add(self, port: Port, target: int) -> None:
        """Terminate TLS on 127.0.0.1:`port` and relay to 127.0.0.1:`target`; returns once it listens."""
        front = TlsFront(self.context, port, target)
        self._loop.run(front.start())
        self._fronts.append(front)

    def close(self) -> None:
        for front in self._fronts:
            self._loop.run(front.stop())
        self._fronts.clear()
        if self._own_loop:
            self._loop.close()


class StandInHub:
    """huggingface.co for one test module: the Space page and the OpenID provider (see the module)."""

    def __init__(self, folder: Path, user: str = "alice") -> None:
        self.user = user  # who /oauth/authorize signs in; a test may change it between sign-ins
        self.authorized: list[str] = []  # the `user` of each sign-in the provider completed
        self.cert, self.key = make_certificate(folder)
        self.http_port, self._tls = free_port(), hold_port()
        self.tls_port = port_of(self._tls)
        self.spaces: dict[str, str] = {}  # name -> https://space.test:<port>, by front_app
        self._loop: _Loop | None = None
        self._fronts: TlsFronts | None = None
        self._server: Any = None

    # --- addresses ------------------------------------------------------------

    @property
    def base(self) -> str:
        """What the browser uses (issuer, authorization endpoint, the Space page)."""
        return f"https://{HUB_HOST}:{self.tls_port}"

    @property
    def provider_url(self) -> str:
        """What the app's server uses (OPENID_PROVIDER_URL): plain HTTP on loopback."""
        return f"http://127.0.0.1:{self.http_port}"

    def space_page_url(self, name: str) -> str:
        """The Space page on "huggingface.co" that frames the app served as `name`."""
        return f"{self.base}/spaces/{name}"

    def space_env(self, space_port: int) -> dict[str, str]:
        """The app's environment on a Space with `hf_oauth: true` whose provider is this stand-in."""
        return {"SPACE_HOST": f"{SPACE_HOST}:{space_port}", "OPENID_PROVIDER_URL": self.provider_url,
                "OAUTH_CLIENT_ID": CLIENT_ID}

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> "StandInHub":
        import uvicorn

        self._loop = _Loop()
        self._fronts = TlsFronts(self.cert, self.key, self._loop)
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.http_port, log_level="warning",
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._loop.spawn(self._server.serve())
        self._add_front(self._tls, self.http_port)
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in provider did not start")
            time.sleep(0.05)
        return self

    def front_app(self, name: str, port: Port, app_url: str) -> str:
        """Serve the app at https://space.test:`port` (it listens on plain HTTP at `app_url`); its URL."""
        self._add_front(port, urlsplit(app_url).port)
        self.spaces[name] = f"https://{SPACE_HOST}:{port_of(port)}"
        return self.spaces[name]

    def _add_front(self, port: Port, target: int) -> None:
        assert self._fronts is not None, "start() first"
        self._fronts.add(port, target)

    def stop(self) -> None:
        if self._loop is None or self._fronts is None:
            return
        self._fronts.close()
        self._server.should_exit = True
        deadline = time.monotonic() + 10
        while self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "StandInHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the provider -----------------------------------------------------------

    def _app(self) -> FastAPI:
        from joserfc import jwt
        from joserfc.jwk import KeySet, RSAKey

        key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"}, private=True)
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def metadata() -> dict[str, Any]:
            return {"issuer": self.base, "authorization_endpoint": self.base + "/oauth/authorize",
                    "token_endpoint": self.provider_url + "/oauth/token", "jwks_uri": self.provider_url + "/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"], "response_types_supported": ["code"],
                    "subject_types_supported": ["public"]}

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return KeySet([key]).as_dict(private=False)

        @app.get("/oauth/authorize")
        def authorize(request: Request) -> RedirectResponse:
            # no consent screen: the code carries what the token endpoint needs (stateless)
            q = request.query_params
            code = json.dumps({"nonce": q.get("nonce"), "client_id": q["client_id"], "user": self.user})
            back = urlencode({"code": base64.urlsafe_b64encode(code.encode()).decode(), "state": q["state"]})
            sep = "&" if "?" in q["redirect_uri"] else "?"
            return RedirectResponse(f"{q['redirect_uri']}{sep}{back}", status_code=302)

        @app.post("/oauth/token")
        async def token(request: Request) -> dict[str, Any]:
            code = json.loads(base64.urlsafe_b64decode((await request.form())["code"]))
            user, now = code["user"], int(time.time())
            claims = {"iss": self.base, "sub": "u-" + user, "aud": code["client_id"], "iat": now, "exp": now + 3600,
                      "nonce": code["nonce"], "preferred_username": user, "name": user.title(),
                      "profile": f"https://huggingface.co/{user}", "picture": ""}
            self.authorized.append(user)
            return {"access_token": "hf_oauth_stand_in_" + user, "token_type": "bearer", "expires_in": 28800,
                    "scope": "openid profile", "id_token": jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)}

        @app.get("/spaces/{name}", response_class=HTMLResponse)
        def space_page(name: str) -> str:
            return (f'<html><body style="margin:0"><h3>stand-in huggingface.co Space page</h3>'
                    f'<iframe id="space" src="{self.spaces[name]}/" style="width:1100px;height:850px;border:0"'
                    f' allow="clipboard-write"></iframe></body></html>')

        return app
