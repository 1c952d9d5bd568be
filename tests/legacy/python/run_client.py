"""python-socketio against Switchyard's interop server (INTEROP_ALLOW_EIO3=1).

Usage: run_client.py 4|5 -- with python-socketio 4.x (a Socket.IO v2-era client: Engine.IO v3) or 5.x
(Engine.IO v4) installed in the running interpreter. Starts target/release/interop (or the shell command in
INTEROP_SERVER_CMD) on a free port, then, over long-polling and over WebSocket: connects to `/` and
`/second`, exchanges events, acks both ways and binary, joins a room, and checks that a namespace
refusal reaches the client. Exits non-zero on the first failure.
"""

import os
import queue
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import socketio

try:
    from importlib.metadata import version as _installed

    SIO_VERSION = _installed("python-socketio")
except Exception:  # pragma: no cover - python-socketio 4 on an old interpreter
    SIO_VERSION = getattr(socketio, "__version__", "?")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WAIT = 5


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server():
    port = free_port()
    command = os.environ.get("INTEROP_SERVER_CMD") or "exec '%s'" % os.path.join(REPO, "target/release/interop")
    env = dict(os.environ, PORT=str(port), INTEROP_ALLOW_EIO3="1")
    server = subprocess.Popen(
        ["/bin/sh", "-c", command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = "http://127.0.0.1:%d" % port
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/socket.io/?EIO=4&transport=polling", timeout=1) as res:
                if res.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    raise SystemExit("server under test did not answer on %s" % url)


def stop_server(server):
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Recorder:
    """Every event of interest, as (namespace, event, args), in arrival order."""

    def __init__(self, client, events, namespaces):
        self.queue = queue.Queue()
        for namespace in namespaces:
            for event in events:
                client.on(event, self.handler(namespace, event), namespace=namespace)

    def handler(self, namespace, event):
        def handle(*args):
            self.queue.put((namespace, event, list(args)))

        return handle

    def next(self, namespace, event):
        deadline = time.time() + WAIT
        skipped = []
        while time.time() < deadline:
            try:
                got = self.queue.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if got[0] == namespace and got[1] == event:
                for item in skipped:
                    self.queue.put(item)
                return got[2]
            skipped.append(got)
        raise AssertionError("no %r on %s within %ds (got %r)" % (event, namespace, WAIT, skipped))


def acked(client, event, *args, namespace="/"):
    answer = queue.Queue()
    client.emit(event, tuple(args) if len(args) != 1 else args[0], namespace=namespace,
                callback=lambda *reply: answer.put(list(reply)))
    try:
        return answer.get(timeout=WAIT)
    except queue.Empty:
        raise AssertionError("no ack for %r within %ds" % (event, WAIT))


def check(what, got, expected):
    if got != expected:
        raise AssertionError("%s: expected %r, got %r" % (what, expected, got))
    print("  ok  %s" % what)


def run(url, version, transport):
    print("python-socketio %s over %s" % (SIO_VERSION, transport))
    client = socketio.Client(reconnection=False)
    recorder = Recorder(client, ["hello", "echo", "binary", "server-ack-result", "room-msg"], ["/", "/second"])
    client.on("ask", lambda question: "re: %s" % question if isinstance(question, str) else question)
    client.connect(url + "?who=py", transports=[transport], namespaces=["/", "/second"])
    try:
        hello = recorder.next("/", "hello")[0]
        check("hello on /", (hello["nsp"], hello["query"].get("who")), ("/", "py"))
        check("socket id", hello["id"], client.get_sid("/") if hasattr(client, "get_sid") else client.sid)
        check("hello on /second", recorder.next("/second", "hello")[0]["nsp"], "/second")

        client.emit("echo", ("text", 42, {"nested": [True, None, "ü€😀"]}))
        check("event round trip", recorder.next("/", "echo"), ["text", 42, {"nested": [True, None, "ü€😀"]}])
        check("ack", acked(client, "echo-ack", "a", {"b": 1}), ["a", {"b": 1}])
        client.emit("server-ack", "q1")
        check("server ack (client answers)", recorder.next("/", "server-ack-result"), ["re: q1"])

        client.emit("echo", (b"\x00\x01\xfe\xff", {"inner": b"h\xc3\xa9"}, "after"))
        check("binary round trip", recorder.next("/", "echo"), [b"\x00\x01\xfe\xff", {"inner": b"h\xc3\xa9"}, "after"])
        client.emit("binary")
        check("binary from the server", recorder.next("/", "binary"),
              [b"\x01\x02\x03", {"nested": b"\x04\x05", "list": [b"\x06"]}])
        check("binary ack", acked(client, "echo-ack", b"\x09\x08"), [b"\x09\x08"])

        rooms = acked(client, "join", "py-room")[0]
        check("join", "py-room" in rooms and hello["id"] in rooms, True)
        client.emit("to-room", ("py-room", "to the room", b"\x01"))
        check("room message", recorder.next("/", "room-msg"), ["to the room", b"\x01"])

        client.emit("echo", "on second", namespace="/second")
        check("event on /second", recorder.next("/second", "echo"), ["on second"])
    finally:
        client.disconnect()

    # A namespace refused by its middleware: the client's connect_error handler gets the error (v2
    # protocol: its data; v5: message and data).
    errors = queue.Queue()
    refused = socketio.Client(reconnection=False)
    refused.on("connect_error", lambda *args: errors.put(list(args)), namespace="/private")
    try:
        refused.connect(url, transports=[transport], namespaces=["/private"])
    except socketio.exceptions.ConnectionError:
        pass
    try:
        error = errors.get(timeout=WAIT)
    except queue.Empty:
        raise AssertionError("no connect_error for /private within %ds" % WAIT)
    finally:
        refused.disconnect()
    expected = [{"code": 403}] if version == "4" else [{"message": "forbidden", "data": {"code": 403}}]
    check("refused namespace", error, expected)


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "5"
    if not SIO_VERSION.startswith(version + "."):
        raise SystemExit("python-socketio %s.x expected, found %s" % (version, SIO_VERSION))
    server, url = start_server()
    try:
        for transport in ["polling", "websocket"]:
            run(url, version, transport)
    finally:
        stop_server(server)
    print("python-socketio %s: all checks passed" % SIO_VERSION)


if __name__ == "__main__":
    main()
