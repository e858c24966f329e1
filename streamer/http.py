"""The metrics port: /metrics, /healthz (process alive), /readyz (ready to judge), and
/incidents (the last decisions, see ``incident_page``)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamer.incident_page import incident_page, list_page
from streamer.incidents import IncidentStore

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Mapping[str, bool]]
# A page's (status, body, content type) for a path with its query.
Response = tuple[int, bytes, str]
Pages = Callable[[str], Response]

HTML = "text/html; charset=utf-8"
TEXT = "text/plain"
# The pages are static: a browser is told to run no script and fetch nothing.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class MetricsServer:
    """A small HTTP server on its own thread; ``port=0`` picks a free port.

    ``pages`` answers ``/incidents...`` (default: the pages of ``incidents``); ``alive``
    answers ``/healthz`` (default: this process answering is alive); ``judging``, when
    given, is reported by ``/readyz`` (the workers' parent sends incident pages to the
    worker that judges).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: ReadinessCheck,
        host: str,
        port: int,
        incidents: IncidentStore | None = None,
        *,
        pages: Pages | None = None,
        alive: Callable[[], bool] | None = None,
        judging: Callable[[], bool] | None = None,
    ) -> None:
        handler = _handler(
            registry,
            readiness,
            pages or incident_pages(incidents or IncidentStore(capacity=1)),
            alive or (lambda: True),
            judging,
        )
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def incident_pages(incidents: IncidentStore) -> Pages:
    """The incident list (filtered by ``action`` and ``cause``) and each incident's page."""

    def pages(target: str) -> Response:
        path, _, query = target.partition("?")
        if path == "/incidents":
            wanted = {k: v[-1] for k, v in parse_qs(query).items() if k in ("action", "cause")}
            return 200, list_page(incidents.recent(**wanted), wanted).encode(), HTML
        incident = incidents.get(path.removeprefix("/incidents/"))
        if incident is None:
            return 404, b"no such decision among those kept\n", TEXT
        return 200, incident_page(incident, incidents.timeline(incident)).encode(), HTML

    return pages


def _handler(
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    pages: Pages,
    alive: Callable[[], bool],
    judging: Callable[[], bool] | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(*((200, b"ok\n") if alive() else (503, b"a worker is down\n")), TEXT)
            elif path == "/readyz":
                checks = dict(readiness())
                status = 200 if all(checks.values()) else 503
                report: dict[str, object] = {"ready": status == 200, "checks": checks}
                if judging is not None:
                    report["judging"] = judging()
                self._send(status, json.dumps(report).encode() + b"\n", "application/json")
            elif path == "/incidents" or path.startswith("/incidents/"):
                self._send(*pages(self.path))
            else:
                self._send(404, b"not found: try /metrics, /healthz, /readyz or /incidents\n", TEXT)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if content_type == HTML:
                self.send_header("Content-Security-Policy", PAGE_POLICY)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler
