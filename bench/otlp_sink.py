"""An OTLP/HTTP trace collector that keeps nothing: it decodes each export, counts its
spans and answers success. ``proxy_overhead.py --trace`` points guard at it, so that
the cost measured is guard's own (making, batching and sending spans), not a collector's.

    python -m bench.otlp_sink --port 4318      # GET /stats -> {"exports": .., "spans": ..}
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

STATS = {"exports": 0, "spans": 0}
ANSWER = ExportTraceServiceResponse().SerializeToString()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        export = ExportTraceServiceRequest.FromString(body)
        STATS["exports"] += 1
        STATS["spans"] += sum(
            len(scope.spans) for resource in export.resource_spans for scope in resource.scope_spans
        )
        self._answer(ANSWER, "application/x-protobuf")

    def do_GET(self) -> None:  # /health for the harness, /stats for the report
        self._answer(json.dumps(STATS).encode(), "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Sink).serve_forever()


if __name__ == "__main__":
    main()
