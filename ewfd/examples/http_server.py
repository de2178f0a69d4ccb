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
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import structlog

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

log = structlog.get_logger("ewfd.examples.http_server")


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
            log.debug("http.request", client=self.client_address[0], request=format % args)

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", default="http_example.db")
    args = parser.parse_args(argv)

    engine = build_engine(SQLiteStore(args.db))
    resumed = engine.resume_workflows()
    server = make_server(engine, args.port, args.host)
    log.info("http.listening", host=args.host, port=server.server_address[1],
             resumed=len(resumed))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()      # waits for the workflows still running


if __name__ == "__main__":
    main()
