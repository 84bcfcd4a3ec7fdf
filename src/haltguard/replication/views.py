"""What a standby answers on its port while it follows: ``/metrics`` (its lag, for
Prometheus), ``/v1/health`` (503 with ``role: standby``, so a forwarder or client following
health moves on to the primary) and ``/v1/replication`` (its progress as JSON).

A few plain routes on the standard library's HTTP server: the venue's own app takes the
port over once this node becomes the primary.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from haltguard.replication.models import FollowerProgress

STANDBY_CODE = "venue_standby"
STOP_POLL_S = 0.02
"""How often the server looks whether it must stop: a takeover waits for it to let go of the
port (the standard library's default, 0.5 s, would add that much to every failover)."""


def metrics_text(progress: FollowerProgress, role: str) -> str:
    """Prometheus text exposition of a standby's progress."""
    lines = []
    for name, kind, value, help_text in (
        ("haltguard_standby_lag_commands", "gauge", progress.lag_commands,
         "Commands the stream delivered that this standby has not applied yet."),
        ("haltguard_standby_lag_ms", "gauge", round(progress.lag_ms, 3),
         "Age of the newest applied command when it was applied, in milliseconds."),
        ("haltguard_standby_applied_seq", "gauge", progress.applied_seq,
         "The last command applied to this node's journal and venue."),
        ("haltguard_standby_stream_seq", "gauge", progress.stream_seq,
         "The last journal stream message this node applied."),
        ("haltguard_standby_batches_applied_total", "counter", progress.batches_applied,
         "Batch messages applied since start."),
        ("haltguard_standby_healthy", "gauge", 0 if progress.problem else 1,
         "1 while this standby may take over; 0 after a gap or a refused command."),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    lines.append(f'haltguard_venue_role{{role="{role}"}} 1')
    return "\n".join(lines) + "\n"


class StandbyHttp:
    """The standby's HTTP answers, on a thread, until :meth:`stop`."""

    def __init__(self, host: str, port: int, progress: Callable[[], FollowerProgress],
                 describe: Callable[[], dict[str, object]]) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, *_args: object) -> None:
                return

        self._progress = progress
        self._describe = describe
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": STOP_POLL_S},
                                        name="standby-http", daemon=True)

    def start(self) -> StandbyHttp:
        self._thread.start()
        return self

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        progress = self._progress()
        if path == "/metrics":
            status, body, kind = 200, metrics_text(progress, "standby"), "text/plain"
        elif path == "/v1/health":
            message = progress.problem or "this venue is a standby; send commands to the primary"
            status, kind = 503, "application/json"
            body = json.dumps({"error": {"code": STANDBY_CODE, "message": message},
                               "role": "standby", "applied_seq": progress.applied_seq,
                               "lag_commands": progress.lag_commands})
        elif path == "/v1/replication":
            status, kind = 200, "application/json"
            body = json.dumps({"role": "standby", **self._describe()})
        else:
            status, kind = 404, "application/json"
            body = json.dumps({"error": {"code": "not_found",
                                         "message": "a standby answers /metrics, /v1/health "
                                         "and /v1/replication only"}})
        data = body.encode()
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(data)))
        if status == 503:
            request.send_header("Retry-After", "1")
        request.end_headers()
        request.wfile.write(data)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(3.0)
