"""When the Hub's frame cannot keep the sign-in cookie: say so, and offer the app in its own tab.

A Space page on huggingface.co shows the app in a frame from another site.
`annotator.ui.cookies` makes the session cookies partitioned, which browsers
that block third-party cookies still accept there (Chromium). A browser that
refuses even those (cookies blocked for the app's site when framed, or a
browser without partitioned cookies) cannot keep anyone signed in inside the
frame: Hugging Face's sign-in loops and ends on an error page, the password
form comes back. Nothing on the page said why.

`FRAME_SCRIPT` runs in the page's <head>, only when the page is framed. It
stores a cookie with the attributes the session cookie has (Secure,
SameSite=None, Partitioned) from the page itself, a cookie the browser
judges by the same rules as the server's, reads it back, and deletes it. If
the browser refused it, a notice at the top of the page says that sign-in
cannot work in this frame and links to the app's own address in a new tab
(`target=_blank`), where the cookie is first-party.

`FrameCookieNotice` puts the script into the page's HTML itself, not into
Gradio's `head`: Gradio applies `head` only once the app's config is loaded,
and the password sign-in form is served without it, so the one page where a
framed person first meets the problem would lack the notice.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOTICE_ID = "frame-cookie-notice"

FRAME_SCRIPT = r"""<script>
(() => {
  let framed = true;
  try { framed = window.top !== window.self; } catch (e) { framed = true; }
  if (!framed) return;
  const probe = "annotator-cookie-probe";
  const attrs = "; Path=/; SameSite=None; Secure; Partitioned";
  document.cookie = probe + "=1" + attrs;
  const kept = document.cookie.split("; ").includes(probe + "=1");
  document.cookie = probe + "=; Max-Age=0" + attrs;
  if (kept) return;
  const show = () => {
    if (document.getElementById("%(id)s")) return;
    const url = window.location.origin + window.location.pathname;
    const box = document.createElement("div");
    box.id = "%(id)s";
    box.setAttribute("role", "alert");
    box.style.cssText = "position:sticky;top:0;z-index:1000;background:#fffbeb;color:#78350f;" +
      "border:2px solid #b45309;border-radius:6px;padding:10px 14px;margin:8px;font:15px/1.4 system-ui,sans-serif";
    const text = document.createElement("span");
    text.textContent = "This browser blocks the app's sign-in cookie inside this embedded page, so signing in " +
      "here cannot work. ";
    const link = document.createElement("a");
    link.href = url; link.target = "_blank"; link.rel = "noopener";
    link.textContent = "Open the app in its own tab";
    link.style.cssText = "color:#1e3a8a;font-weight:700;text-decoration:underline";
    box.append(text, link);
    document.body.prepend(box);
  };
  if (document.body) show(); else document.addEventListener("DOMContentLoaded", show);
})();
</script>
""" % {"id": NOTICE_ID}


class FrameCookieNotice:
    """Pure ASGI middleware: adds `FRAME_SCRIPT` to the page (`GET /`, HTML) before `</head>`.

    Only that response is held until complete (one small HTML document);
    every other request, and an encoded (compressed) page, passes untouched.
    """

    def __init__(self, app: ASGIApp, pages: tuple[str, ...] = ("/",)) -> None:
        self.app, self.pages = app, pages
        self.script = FRAME_SCRIPT.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in self.pages:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []

        async def send_with_script(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers") or [])
                if headers.get("content-type", "").startswith("text/html") and "content-encoding" not in headers:
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(body).replace(b"</head>", self.script + b"</head>", 1)
                headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self.app(scope, receive, send_with_script)
