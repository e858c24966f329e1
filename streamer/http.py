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

HTML = "text/html; charset=utf-8"
# The pages are static: a browser is told to run no script and fetch nothing.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class MetricsServer:
    """A small HTTP server on its own thread; ``port=0`` picks a free port."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: ReadinessCheck,
        host: str,
        port: int,
        incidents: IncidentStore | None = None,
    ) -> None:
        handler = _handler(registry, readiness, incidents or IncidentStore(capacity=1))
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


def _handler(
    registry: CollectorRegistry, readiness: ReadinessCheck, incidents: IncidentStore
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                checks = dict(readiness())
                status = 200 if all(checks.values()) else 503
                body = json.dumps({"ready": status == 200, "checks": checks}).encode()
                self._send(status, body + b"\n", "application/json")
            elif path == "/incidents":
                wanted = {k: v[-1] for k, v in parse_qs(query).items() if k in ("action", "cause")}
                self._send(200, list_page(incidents.recent(**wanted), wanted).encode(), HTML)
            elif path.startswith("/incidents/"):
                incident = incidents.get(path.removeprefix("/incidents/"))
                if incident is None:
                    self._send(404, b"no such decision among those kept\n", "text/plain")
                else:
                    page = incident_page(incident, incidents.timeline(incident))
                    self._send(200, page.encode(), HTML)
            else:
                self._send(
                    404, b"not found: try /metrics, /healthz, /readyz or /incidents\n", "text/plain"
                )

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
