"""An HTTP service that starts workflows in the background: EWF's ``httpexample``.

``GET /greet/NAME`` starts a ``greet`` workflow with ``engine.run(wf,
background=True)`` and answers at once with ``{"workflow_id": ...}``;
``GET /status/ID`` reads the workflow back from the store. On start the server
calls ``engine.resume_workflows()``, so workflows interrupted by a restart
finish. Run it with::

    python -m ewfd.examples.http_server --port 8090 --db http_example.db
    curl http://localhost:8090/greet/EWF
    curl http://localhost:8090/status/<workflow_id>

Background runs happen in the engine's thread pool, not in the main thread,
so a *sync* step that overruns its ``timeout`` cannot be interrupted there: it
is failed with ``timed out after ...`` when it returns. Write slow steps as
``async def`` (they are cancelled on time), or run them through the daemon,
whose workers run steps in their main thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from ewfd import (
    Engine,
    RetryPolicy,
    SQLiteStore,
    Step,
    StepContext,
    Store,
    WorkflowNotFound,
    WorkflowTemplate,
    backoff,
)

log = logging.getLogger("ewfd.examples.http_server")


def compose(ctx: StepContext, state: dict[str, Any]) -> None:
    state["greeting"] = f"Hello, {state['name']}!"


def deliver(ctx: StepContext, state: dict[str, Any]) -> None:
    time.sleep(0.05)        # stands in for a call to a slow service
    state["delivered"] = True


def build_engine(store: Store | None = None) -> Engine:
    """An engine with the ``greet`` workflow registered on ``store``."""
    engine = Engine(store=store)
    engine.register("compose", compose)
    engine.register("deliver", deliver)
    engine.register_template("greet", WorkflowTemplate(steps=[
        Step("compose"),
        Step("deliver", retry=RetryPolicy(max_attempts=3, backoff=backoff.constant(0.5)),
             timeout=5.0),
    ]))
    return engine


def make_server(engine: Engine, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (0 picks a free port) that serves ``engine``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) == 2 and parts[0] == "greet" and parts[1]:
                self._greet(unquote(parts[1]))
            elif len(parts) == 2 and parts[0] == "status" and parts[1]:
                self._status(unquote(parts[1]))
            else:
                self._send(HTTPStatus.NOT_FOUND,
                           {"error": "unknown path: use /greet/NAME or /status/ID"})

        def _greet(self, name: str) -> None:
            wf = engine.new_workflow("greet", state={"name": name}, display_name=f"greet {name}")
            engine.run(wf, background=True)     # the outcome is read through /status
            self._send(HTTPStatus.ACCEPTED, {"workflow_id": wf.uuid})

        def _status(self, uuid: str) -> None:
            try:
                wf = engine.store.load_workflow(uuid)
            except WorkflowNotFound:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no workflow {uuid}"})
                return
            self._send(HTTPStatus.OK, {
                "uuid": wf.uuid, "name": wf.name, "status": str(wf.status),
                "current_step": wf.current_step, "state": wf.state, "error": wf.error})

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http.request client=%s request=%s", self.client_address[0],
                      format % args)

    return ThreadingHTTPServer((host, port), Handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ewfd.examples.http_server",
        description="An HTTP service that starts a `greet` workflow per request, in the "
                    "background, and reports its status. GET /greet/NAME answers 202 with "
                    '{"workflow_id": ...} at once; GET /status/ID returns the workflow as '
                    "stored (status, current step, state, error). Workflows left unfinished "
                    "by the last run are resumed at start.",
        epilog="Try: curl http://127.0.0.1:8090/greet/EWF, then curl "
               "http://127.0.0.1:8090/status/<workflow_id>. Ctrl-C stops the server after "
               "the workflows still running finish.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=8090,
                        help="TCP port to listen on; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; 0.0.0.0 listens on every interface")
    parser.add_argument("--db", default="http_example.db",
                        help="SQLite file holding the workflows (created if missing), relative "
                             "to the current directory")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="what to log to stderr: info shows each workflow's steps, debug "
                             "also each request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The program decides how it logs; ewfd's events follow (see ewfd.liblog).
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s "
                        "%(name)s: %(message)s")
    engine = build_engine(SQLiteStore(args.db))
    resumed = engine.resume_workflows()
    server = make_server(engine, args.port, args.host)
    log.info("http.listening host=%s port=%d resumed=%d", args.host, server.server_address[1],
             len(resumed))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()      # waits for the workflows still running


if __name__ == "__main__":
    main()
