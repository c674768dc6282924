"""WebSockets: Flask-Sock and Flask-SocketIO apps under runserver.py and `flask run`.

    flock /tmp/bench.lock python3 bench/websocket.py --venv /work/venv   # about 2 minutes
    python3 bench/websocket.py --quick                                   # one run each

One Flask app (written into a temporary directory) has a Flask-Sock echo
route (/echo) and a Flask-SocketIO "echo" event in threading mode, both on
simple-websocket, and a hello-world view (/).  For each server (runserver.py,
and `flask run` as the reference: Werkzeug's dev server, which these
libraries were written for) and each library, a process of its own opens 50
WebSockets with the library's own client (simple-websocket's Client,
python-socketio's Client over the websocket transport), and each echoes a
message every 50 ms for 5 s, checking every reply.  Meanwhile a fast client
GETs / every 5 ms on a keep-alive connection (a new one when the server
closes it).  Measured: the echo round trip, echoes and errors, and the fast
client's worst response time, while the WebSockets are open and over the
whole run (their handshakes included).  Target (issue 21, with issue 19's
stall target): the fast client's worst ≤ 50 ms while they are open.

Writes bench/websocket.md (bench/readme.py copies it into README.md) and
every sample's summary to bench/websocket.json.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from run import machine_info, runserver_fingerprint
from servers import HERE, Context, Process, ServerError, free_port, stop_all, wait_http
from stress import FastClient

CLIENTS = 50                    # WebSockets open at once
INTERVAL = 0.05                 # each sends a message this often
SECONDS = 5.0                   # for this long
BASELINE = 0.5                  # the fast client runs alone this long first
TARGET = 0.050                  # the fast client's worst while they are open
REPLY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0          # for all the clients to connect
CLOSE_TIMEOUT = 10.0            # for all of them to close
SERVERS = ["runserver", "flask-run"]
LIBRARIES = ["flask-sock", "flask-socketio"]
DESCRIPTIONS = {
    "runserver": "runserver.py --noreload --quiet",
    "flask-run": "flask run (Werkzeug %s), request log off",
}
CLIENT_NAMES = {
    "flask-sock": "Flask-Sock route, simple-websocket Client",
    "flask-socketio": "Flask-SocketIO (threading), python-socketio Client",
}
PACKAGES = ("flask", "werkzeug", "flask-sock", "flask-socketio", "simple-websocket",
            "python-socketio", "python-engineio", "websocket-client")

APP_SOURCE = '''\
import logging
import os

from flask import Flask
from flask_sock import Sock
from flask_socketio import SocketIO, emit

if os.environ.get("BENCH_QUIET_WERKZEUG"):      # flask run: no request log, as --quiet
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

app = Flask(__name__)
sock = Sock(app)
socketio = SocketIO(app, async_mode="threading")


@app.route("/")
def hello():
    return "Hello, world!"


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())


@socketio.on("echo")
def on_echo(data):
    emit("echo", data)
'''


def log(message):
    print("[websocket] " + message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ the load ---
# (In a process of its own, under the virtualenv's Python: the clients'
# threads must not hold the GIL the fast client needs.)


def sock_client(port):
    """A simple-websocket connection to /echo: (send-and-receive, close)."""
    import simple_websocket
    ws = simple_websocket.Client.connect("ws://127.0.0.1:%d/echo" % port)

    def echo(text):
        ws.send(text)
        return ws.receive(timeout=REPLY_TIMEOUT)
    return echo, ws.close


def socketio_client(port):
    """A python-socketio connection over the websocket transport: (echo, close)."""
    import socketio
    client = socketio.Client(reconnection=False)
    replies = queue.Queue()
    client.on("echo", replies.put)
    client.connect("http://127.0.0.1:%d" % port, transports=["websocket"], wait_timeout=10)

    def echo(text):
        client.emit("echo", text)
        return replies.get(timeout=REPLY_TIMEOUT)
    return echo, client.disconnect


def load(library, port):
    """Open CLIENTS connections, say OPEN, echo for SECONDS, say CLOSING, close
    them; print a JSON summary last.  A client that hangs is counted, not
    waited for."""
    # This file's name is websocket-client's package's: out of the way of its import.
    sys.path[:] = [entry for entry in sys.path
                   if os.path.realpath(entry or os.curdir) != os.path.realpath(HERE)]
    connect = sock_client if library == "flask-sock" else socketio_client
    connections, errors, latencies = [None] * CLIENTS, [], [[] for _ in range(CLIENTS)]
    opened = threading.Barrier(CLIENTS + 1)
    go, end = threading.Event(), [0.0]

    def client(index):
        try:
            connections[index] = connect(port)
        except Exception as exc:
            errors.append("connect: %r" % exc)
        try:
            opened.wait(CONNECT_TIMEOUT)
        except threading.BrokenBarrierError:
            pass
        go.wait()
        if connections[index] is None:
            return
        echo, count = connections[index][0], 0
        try:
            while time.monotonic() < end[0]:
                text = "%d-%d" % (index, count)
                started = time.perf_counter()
                reply = echo(text)
                if reply != text:
                    errors.append("client %d sent %r, got %r" % (index, text, reply))
                    return
                latencies[index].append(time.perf_counter() - started)
                count += 1
                time.sleep(INTERVAL)
        except Exception as exc:
            errors.append("echo: %r" % exc)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(index,), daemon=True)
               for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        opened.wait(CONNECT_TIMEOUT)
    except threading.BrokenBarrierError:
        errors.append("not all connected within %g s" % CONNECT_TIMEOUT)
    connect_seconds = time.monotonic() - started
    print("OPEN", flush=True)
    end[0] = time.monotonic() + SECONDS
    go.set()
    deadline = end[0] + REPLY_TIMEOUT + 1
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        errors.append("%d clients still waiting for a reply" % stuck)
    print("CLOSING", flush=True)

    def close(connection):
        try:
            connection[1]()
        except Exception as exc:
            errors.append("close: %r" % exc)
    closers = [threading.Thread(target=close, args=(connection,), daemon=True)
               for connection in connections if connection is not None]
    for closer in closers:
        closer.start()
    deadline = time.monotonic() + CLOSE_TIMEOUT
    for closer in closers:
        closer.join(max(deadline - time.monotonic(), 0))
    if any(closer.is_alive() for closer in closers):
        errors.append("%d clients did not close within %g s"
                      % (sum(closer.is_alive() for closer in closers), CLOSE_TIMEOUT))
    samples = sorted(sample for samples in latencies for sample in samples)
    print(json.dumps({
        "open": sum(connection is not None for connection in connections),
        "connect_seconds": connect_seconds, "echoes": len(samples),
        "median": statistics.median(samples) if samples else None,
        "p99": samples[int(len(samples) * 0.99)] if samples else None,
        "max": samples[-1] if samples else None,
        "errors": errors[:5], "error_count": len(errors)}), flush=True)
    os._exit(0)                 # the clients' own threads may hang on: not waited for


# ------------------------------------------------------------- one run ---


def launch(ctx, name, workdir):
    """Start a server for the app; return (Process, port)."""
    port = free_port()
    if name == "runserver":
        argv = [ctx.python, ctx.runserver, "wsapp:app", "127.0.0.1:%d" % port,
                "--noreload", "--quiet"]
        extra = {}
    else:
        argv = [os.path.join(ctx.venv, "bin", "flask"), "--app", "wsapp:app", "run",
                "--host", "127.0.0.1", "--port", str(port)]
        extra = {"BENCH_QUIET_WERKZEUG": "1"}
    process = Process(name, argv, os.path.join(workdir, "%s-%d.log" % (name, port)),
                      env=ctx.env(app_dirs=[workdir], extra=extra), cwd=workdir)
    try:
        wait_http(port, process, 30)
    except BaseException:
        process.stop()
        raise
    return process, port


def one_run(ctx, name, library, workdir):
    """50 echo WebSockets of `library` and the fast client against a fresh server."""
    process, port = launch(ctx, name, workdir)
    try:
        fast = FastClient(port, REPLY_TIMEOUT)
        fast.start()
        time.sleep(BASELINE)
        started = time.monotonic()
        marks = {}
        clients = subprocess.Popen([ctx.python, os.path.abspath(__file__), "--load", library,
                                    str(port)], stdout=subprocess.PIPE, text=True,
                                   cwd=workdir, env=ctx.env())
        summary = None
        for line in clients.stdout:
            if line.strip() in ("OPEN", "CLOSING"):
                marks[line.strip()] = time.monotonic()
            elif line.startswith("{"):
                summary = json.loads(line)
        try:
            clients.wait(10)
        except subprocess.TimeoutExpired:
            clients.kill()
        ended = time.monotonic()
        fast.stop()
        fast.join(REPLY_TIMEOUT + 5)
    finally:
        process.stop()
    if summary is None or "OPEN" not in marks:
        raise ServerError("the WebSocket clients failed (status %s)" % clients.returncode)

    def worst(start, end):
        timed = [sample for sample in fast.samples
                 if start <= sample[0] <= end and sample[1] is not None]
        return max((sample[1] for sample in timed), default=None), \
            len([sample for sample in fast.samples if start <= sample[0] <= end]) - len(timed)
    open_worst, open_errors = worst(marks["OPEN"], marks.get("CLOSING", ended))
    all_worst, all_errors = worst(started, ended)
    summary.update(fast_worst_open=open_worst, fast_worst_all=all_worst,
                   fast_errors=all_errors, fast_requests=len(
                       [sample for sample in fast.samples if started <= sample[0] <= ended]),
                   fast_new_connections=sum(sample[2] for sample in fast.samples
                                            if started <= sample[0] <= ended))
    return summary


# -------------------------------------------------------------- report ---


def ms(seconds, digits=0):
    if seconds is None:
        return "-"
    return "%s ms" % format(seconds * 1000, ",.%df" % digits)


def cell(runs, key, digits=0):
    """The median over the runs, and the largest."""
    values = sorted(run[key] for run in runs if run.get(key) is not None)
    if not values:
        return "-"
    return "%s (max %s)" % (ms(statistics.median(values), digits), ms(values[-1], digits))


def markdown(results):
    meta = results["meta"]
    lines = ["# WebSockets: Flask-Sock and Flask-SocketIO", "",
             "Run %s on %s; Python %s; %s." % (
                 meta["date"], meta["machine"], meta["python"],
                 ", ".join("%s %s" % item for item in meta["packages"].items())), "",
             "Command: `%s`" % meta["command"], "",
             "runserver.py: %s." % meta["runserver_version"], "",
             "## %d echo WebSockets and a fast keep-alive client" % CLIENTS, "",
             "A Flask app with a Flask-Sock echo route and a Flask-SocketIO echo event "
             "(threading mode). %d clients of the library's own kind connect, then each "
             "echoes a message every %d ms for %g s, checking each reply; meanwhile a client "
             "GETs a hello-world view every 5 ms on a keep-alive connection (a new one when "
             "the server closes it). Medians over %d runs, and the largest; the fast client's "
             "worst while the WebSockets are open (target: ≤ %d ms), and over the whole run "
             "with their %d handshakes. `flask run` is Werkzeug's development server, "
             "threaded, with its request log off." % (
                 CLIENTS, INTERVAL * 1000, SECONDS, meta["repeat"], TARGET * 1000, CLIENTS),
             "",
             "| server | library, client | open | echoes | echo round trip | echo p99 "
             "| errors | fast client worst, open | fast client worst, with handshakes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in meta["servers"]:
        for library in meta["libraries"]:
            runs = results["runs"][name][library]
            good = [run for run in runs if "echoes" in run]
            if not good:
                lines.append("| %s | %s | failed: %s | | | | | | |" % (
                    meta["descriptions"][name], CLIENT_NAMES[library],
                    runs[0].get("error", "?") if runs else "not run"))
                continue
            errors = sum(run["error_count"] + run["fast_errors"] for run in good)
            lines.append("| %s | %s | %d | %s | %s | %s | %d | %s | %s |" % (
                meta["descriptions"][name], CLIENT_NAMES[library],
                min(run["open"] for run in good),
                format(round(statistics.median(run["echoes"] for run in good)), ","),
                cell(good, "median", 1), cell(good, "p99"), errors,
                cell(good, "fast_worst_open"), cell(good, "fast_worst_all")))
    lines.append("")
    verdicts = []
    for library in meta["libraries"]:
        runs = [run for run in results["runs"].get("runserver", {}).get(library, [])
                if run.get("fast_worst_open") is not None]
        if runs:
            worst = max(run["fast_worst_open"] for run in runs)
            verdicts.append("%s: %s, %s" % (CLIENT_NAMES[library], ms(worst),
                                            "pass" if worst <= TARGET else "FAIL"))
    if verdicts:
        lines += ["Target, runserver.py, the fast client's worst while %d WebSockets are "
                  "open, largest over the runs (≤ %d ms): %s." % (
                      CLIENTS, TARGET * 1000, "; ".join(verdicts)), ""]
    return "\n".join(lines)


def package_versions(python):
    code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) "
            "for n in %r}))" % (PACKAGES,))
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise SystemExit("the virtualenv lacks a package: %s\n(it needs %s)"
                         % (result.stderr.strip().splitlines()[-1:], ", ".join(PACKAGES)))
    return json.loads(result.stdout)


# ---------------------------------------------------------------- main ---


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--servers", default=",".join(SERVERS), help=",".join(SERVERS))
    parser.add_argument("--libraries", default=",".join(LIBRARIES), help=",".join(LIBRARIES))
    parser.add_argument("--runserver", default=os.path.join(HERE, "..", "runserver.py"))
    parser.add_argument("--venv", default=os.path.join(HERE, ".venv"),
                        help="a virtualenv with %s (default: bench/.venv)" % ", ".join(PACKAGES))
    parser.add_argument("--output-dir", default=HERE)
    parser.add_argument("--load", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.servers = [part for part in args.servers.split(",") if part]
    args.libraries = [part for part in args.libraries.split(",") if part]
    if args.quick:
        args.repeat = 1
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.load:
        load(args.load[0], int(args.load[1]))
        return 0
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    workdir = tempfile.mkdtemp(prefix="runserver-websocket-")
    with open(os.path.join(workdir, "wsapp.py"), "w", encoding="utf-8") as file:
        file.write(APP_SOURCE)
    ctx = Context(os.path.abspath(args.venv), os.path.abspath(args.runserver), workdir)
    packages = package_versions(ctx.python)
    descriptions = dict(DESCRIPTIONS, **{"flask-run": DESCRIPTIONS["flask-run"]
                                         % packages["werkzeug"]})
    results = {"meta": {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info()[0], "python": subprocess.run(
            [ctx.python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True).stdout.strip() or platform.python_version(),
        "packages": packages, "descriptions": descriptions,
        "command": " ".join(["python3 bench/websocket.py"]
                            + [shlex.quote(arg) for arg in sys.argv[1:]]),
        "runserver_version": runserver_fingerprint(ctx.runserver),
        "servers": args.servers, "libraries": args.libraries, "repeat": args.repeat},
        "runs": {name: {library: [] for library in args.libraries} for name in args.servers}}
    log("logs in %s" % workdir)
    try:
        for rep in range(args.repeat):
            for library in args.libraries:
                names = args.servers[rep % len(args.servers):] + \
                    args.servers[:rep % len(args.servers)]
                for name in names:
                    log("%s, %s, run %d/%d" % (name, library, rep + 1, args.repeat))
                    try:
                        run = one_run(ctx, name, library, workdir)
                    except ServerError as exc:
                        run = {"error": str(exc)}
                    results["runs"][name][library].append(run)
                    if "echoes" in run:
                        log("  %d open, %d echoes, median %s, %d errors; fast client worst "
                            "%s open, %s overall" % (
                                run["open"], run["echoes"], ms(run["median"], 1),
                                run["error_count"] + run["fast_errors"],
                                ms(run["fast_worst_open"]), ms(run["fast_worst_all"])))
                    else:
                        log("  " + run["error"])
    finally:
        stop_all()
    text = markdown(results)
    print(text)
    with open(os.path.join(args.output_dir, "websocket.md"), "w", encoding="utf-8") as file:
        file.write(text)
    with open(os.path.join(args.output_dir, "websocket.json"), "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
