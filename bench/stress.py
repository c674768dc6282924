"""Stress scenarios: a burst of slow requests, and clients that read slowly.

    python3 bench/stress.py --venv /work/venv       # about 6 minutes
    python3 bench/stress.py --quick                 # about 2 minutes

1. stall: N requests whose app sleeps 3 s arrive together, one connection
   each (N = 200 and 1,000), while a fast client sends a hello-world request
   every 5 ms on a keep-alive connection (a new one when the server closes
   it).  Measured: the fast client's worst response time while the slow
   requests run, and when the last slow response arrived.  runserver.py,
   Werkzeug and gunicorn (sync, and gthread) are interleaved in one run.
2. slow-reader (runserver.py only): an 8 MiB file under --static with
   --body-timeout 2, read at about 400 KB/s, arrives whole and the access
   log says 8388608; a client that stops reading after 1 MiB is dropped
   about --body-timeout later, and the log gives the bytes it got.

Writes bench/stress.md (tables, command, date and commit; bench/readme.py
copies it into README.md) and every sample to bench/stress.json.
"""

import argparse
import datetime
import json
import os
import platform
import re
import select
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from run import ensure_venv, machine_info, runserver_fingerprint
from servers import HERE, Context, Process, ServerError, launch, stop_all, wait_http, free_port

SLEEP = 3.0                     # seconds each slow request takes
FAST_PAUSE = 0.005              # between two requests of the fast client
BASELINE = 0.5                  # the fast client runs alone this long first
FILE_SIZE = 8 * 1024 * 1024
READ_RATE = 400_000             # bytes/s of the slow reader
READ_SIZE = 4096
BODY_TIMEOUT = 2.0
STOP_AFTER = 1024 * 1024        # the stalled reader stops after this many bytes
SERVERS = ["runserver", "runserver-close", "werkzeug", "gunicorn-sync", "gunicorn-gthread"]
GTHREAD_THREADS = 32
DESCRIPTIONS = {
    "runserver": "runserver.py --noreload --quiet",
    "runserver-close": "runserver.py --noreload --quiet",
    "baseline": "runserver.py --noreload --quiet, %s",
    "werkzeug": "Werkzeug run_simple(threaded=True)",
    "gunicorn-sync": "gunicorn -w 1 -k sync",
    "gunicorn-gthread": "gunicorn -w 1 -k gthread --threads %d" % GTHREAD_THREADS,
}


def log(message):
    print("[stress] " + message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ the burst ---


def burst_client(port, count, cap):
    """(In a process of its own.)  Open `count` connections at once, each sends
    GET /slow; print when all were sent and when the last response came."""
    request = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    chosen = selectors.DefaultSelector()
    start = time.monotonic()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        chosen.register(sock, selectors.EVENT_WRITE, [b"", False])
    pending, ok, last = count, 0, None
    while pending and time.monotonic() - start < cap:
        for key, _ in chosen.select(0.5):
            sock, state = key.fileobj, key.data
            try:
                if not state[1]:
                    sock.send(request)
                    state[1] = True
                    chosen.modify(sock, selectors.EVENT_READ, state)
                    continue
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                state[0] += data
                continue
            chosen.unregister(sock)
            sock.close()
            pending -= 1
            if state[0].startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                ok += 1
                last = time.monotonic() - start
    print(json.dumps({"ok": ok, "count": count, "last": last}), flush=True)


class FastClient(threading.Thread):
    """A hello-world request every FAST_PAUSE seconds; keep-alive unless the
    server closes (or `close`: a new connection each time).  Records (start,
    duration, whether it opened a connection, whether it was still unanswered:
    timed out, or waiting at stop()) per request; duration None for an error."""

    def __init__(self, port, cap, close=False):
        super().__init__(daemon=True)
        self.port, self.cap = port, cap
        self.request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (
            b"Connection: close\r\n" if close else b"")
        self.samples = []
        self.stopping = threading.Event()
        self.current = None
        self.sock = None

    def run(self):
        while not self.stopping.is_set():
            started = self.current = time.monotonic()
            fresh = self.sock is None
            try:
                self.exchange()
                sample = (started, time.monotonic() - started, fresh, False)
            except socket.timeout:
                self.close()
                sample = (started, time.monotonic() - started, fresh, True)
            except OSError:
                self.close()
                if not fresh and not self.stopping.is_set():
                    continue            # a keep-alive connection the server had closed
                sample = (started, None, fresh, False)
            finally:
                self.current = None
            if self.stopping.is_set():
                break
            self.samples.append(sample)
            self.stopping.wait(FAST_PAUSE)
        self.close()

    def exchange(self):
        """One request and its response; the connection stays unless closed."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.cap)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(self.request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.receive()
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        while len(body) < int(length.group(1) if length else 0):
            body += self.receive()
        if re.search(rb"(?i)\r\nconnection: *close", head):
            self.close()

    def receive(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        return data

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stop(self):
        """Stop, counting a request still unanswered with the time it waited."""
        waiting = self.current
        self.stopping.set()
        if waiting is not None:
            self.samples.append((waiting, time.monotonic() - waiting, False, True))


def launch_server(ctx, name, workdir, extra_env):
    """Start a server for apps:stall; return (Process, port)."""
    if name == "runserver-close":
        return launch(ctx, "runserver", "apps:stall", extra_env=extra_env)
    if name in ("runserver", "werkzeug", "gunicorn-sync"):
        real = "gunicorn" if name == "gunicorn-sync" else name
        return launch(ctx, real, "apps:stall", extra_env=extra_env)
    if name == "baseline":
        return launch(ctx.baseline, "runserver", "apps:stall", extra_env=extra_env)
    port = free_port()
    argv = [os.path.join(ctx.venv, "bin", "gunicorn"), "-w", "1", "-k", "gthread",
            "--threads", str(GTHREAD_THREADS), "-b", "127.0.0.1:%d" % port,
            "--log-level", "warning", "apps:stall"]
    process = Process(name, argv, os.path.join(workdir, "%s-%d.log" % (name, port)),
                      env=ctx.env(extra=extra_env), cwd=HERE)
    try:
        wait_http(port, process, 30)
    except BaseException:
        process.stop()
        raise
    return process, port


def stall_run(ctx, name, count, cap, workdir):
    """One burst of `count` slow requests against a fresh server."""
    process, port = launch_server(ctx, name, workdir, {"BENCH_SLEEP": str(SLEEP)})
    try:
        fast = FastClient(port, cap, close=name == "runserver-close")
        fast.start()
        time.sleep(BASELINE)
        start = time.monotonic()
        burst = subprocess.run([sys.executable, os.path.abspath(__file__), "--burst-client",
                                str(port), str(count), str(cap)],
                               capture_output=True, text=True, timeout=cap + 30)
        end = time.monotonic()
        fast.stop()
        fast.join(cap + 5)
    finally:
        process.stop()
    outcome = json.loads(burst.stdout.strip().splitlines()[-1])
    during = [sample for sample in fast.samples if start <= sample[0] <= end]
    timed = [sample for sample in during if sample[1] is not None]
    worst = max(timed, key=lambda sample: sample[1], default=None)
    return {
        "worst": worst and worst[1],
        "censored": bool(worst and worst[3]),
        "median": statistics.median(sample[1] for sample in timed) if timed else None,
        "answered": sum(not sample[3] for sample in timed),
        "errors": len(during) - len(timed),
        "new_connections": sum(sample[2] for sample in during),
        "slow_ok": outcome["ok"],
        "slow_last": outcome["last"],
        "before_median": statistics.median(
            [sample[1] for sample in fast.samples
             if sample[0] < start and sample[1] is not None] or [0]),
    }


def section_stall(ctx, names, counts, reps, cap, workdir, results):
    stall = results["stall"] = {name: {str(count): [] for count in counts} for name in names}
    for rep in range(reps):
        for count in counts:
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                log("stall: %s, %d slow requests, run %d/%d" % (name, count, rep + 1, reps))
                try:
                    run = stall_run(ctx, name, count, cap, workdir)
                except ServerError as exc:
                    run = {"error": str(exc)}
                stall[name][str(count)].append(run)
                if "worst" in run:
                    log("  worst %.1f ms, last slow response at %s s"
                        % (run["worst"] * 1000, run["slow_last"]))


# ---------------------------------------------------------- slow reader ---


def read_paced(sock, rate, stop_after=None):
    """Read the response at `rate` bytes/s (or until `stop_after` bytes);
    return (bytes of body read, seconds)."""
    start = next_read = time.monotonic()
    received = b""
    while stop_after is None or len(received) < stop_after:
        try:
            data = sock.recv(READ_SIZE)
        except OSError:
            break
        if not data:
            break
        received += data
        next_read += len(data) / rate
        pause = next_read - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    head_end = received.find(b"\r\n\r\n")
    return received[head_end + 4:] if head_end >= 0 else b"", time.monotonic() - start


def wait_for_drop(sock, timeout):
    """Seconds until the server drops the connection (POLLHUP or POLLERR,
    without reading what is buffered), None if it did not within `timeout`."""
    start = time.monotonic()
    poller = select.poll()
    poller.register(sock, 0)            # only the events poll always reports
    if poller.poll(timeout * 1000):
        return time.monotonic() - start
    return None


def log_line(process, pattern, timeout=10):
    """The server's log line matching `pattern` (it goes to a file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(process.log_path, encoding="utf-8", errors="replace") as file:
            for line in file:
                if re.search(pattern, line):
                    return line.strip()
        time.sleep(0.05)
    return None


def slow_reader_run(ctx, name, runserver, directory, workdir):
    """The two slow-reader clients against one runserver.py."""
    context = Context(ctx.venv, runserver, workdir)
    argv = [context.python, runserver, "apps:hello", "127.0.0.1:0", "--noreload",
            "--static", "/static=" + directory, "--body-timeout", str(BODY_TIMEOUT)]
    process = Process(name, argv, os.path.join(workdir, "slow-reader-%s.log" % name),
                      env=context.env(), cwd=HERE, read_stdout=True)
    request = b"GET /static/big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    result = {}
    try:
        port = int(process.wait_for_line(re.compile(r"http://127\.0\.0\.1:(\d+)/"), 30).group(1))
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
            body, seconds = read_paced(sock, READ_RATE)
        line = log_line(process, r"GET /static/big\.bin")
        result["whole"] = {"received": len(body), "seconds": seconds, "log": line}
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request.replace(b"big.bin", b"big.bin?stalled"))
            body, _ = read_paced(sock, READ_RATE, STOP_AFTER)
            dropped = wait_for_drop(sock, BODY_TIMEOUT * 5)
            sock.settimeout(5)
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    body += data
            except OSError:
                pass
        line = log_line(process, r"GET /static/big\.bin\?stalled")
        result["stalled"] = {"received": len(body), "dropped_after": dropped, "log": line}
    finally:
        process.stop()
    return result


def section_slow_reader(ctx, runservers, workdir, results):
    directory = tempfile.mkdtemp(prefix="static-", dir=workdir)
    with open(os.path.join(directory, "big.bin"), "wb") as file:
        file.write(os.urandom(FILE_SIZE))
    results["slow_reader"] = {}
    for name, path in runservers:
        log("slow reader: %s" % name)
        results["slow_reader"][name] = slow_reader_run(ctx, name, path, directory, workdir)


# -------------------------------------------------------------- report ---


def ms(seconds):
    return "%s ms" % format(round(seconds * 1000), ",")


def stall_cell(runs):
    """The median of the runs' worst response times, and the largest."""
    good = [run for run in runs if run.get("worst") is not None]
    if not good:
        return "failed"
    worsts = sorted(run["worst"] for run in good)
    over = any(run["censored"] for run in good)
    text = "%s (max %s)" % (ms(statistics.median(worsts)), ms(worsts[-1]))
    return ("> " + text) if over else text


def describe(name, ctx):
    if name == "baseline":
        return DESCRIPTIONS[name] % ctx.baseline_name
    return DESCRIPTIONS[name]


def markdown(results, ctx):
    meta = results["meta"]
    lines = ["# Stress: a burst of slow requests, and slow readers", "",
             "Run %s on %s; Python %s; peers: %s." % (
                 meta["date"], meta["machine"], meta["python"],
                 ", ".join("%s %s" % item for item in sorted(meta["peers"].items())
                           if item[0] in ("Werkzeug", "gunicorn"))), "",
             "Command: `%s`" % meta["command"], "",
             "runserver.py: %s." % meta["runserver_version"], ""]
    if "stall" in results:
        counts = meta["counts"]
        lines += ["## A burst of slow requests: a fast client's worst response time", "",
                  "N requests whose app sleeps %g s arrive together, one connection each, "
                  "while a client sends a hello-world request every %g ms (keep-alive, or a new "
                  "connection when the server closes it). Worst response time of that client "
                  "while the slow requests run: the median over %d runs, and the largest; "
                  "`>`: still unanswered when the run stopped (%g s). The last column: when "
                  "the last slow response arrived (median)."
                  % (SLEEP, FAST_PAUSE * 1000, meta["repeat"], meta["cap"]), "",
                  "| server | fast client's connection | %s | %s |" % (
                      " | ".join("%s slow: worst" % format(count, ",") for count in counts),
                      " | ".join("%s slow: last slow response" % format(count, ",")
                                 for count in counts)),
                  "|---|---|" + "---:|" * (2 * len(counts))]
        for name, by_count in results["stall"].items():
            runs = [run for count in counts for run in by_count[str(count)] if "worst" in run]
            reused = runs and all(run["new_connections"] <= 1 for run in runs)
            lines.append("| %s | %s | %s | %s |" % (
                describe(name, ctx), "keep-alive" if reused else "new one per request",
                " | ".join(stall_cell(by_count[str(count)]) for count in counts),
                " | ".join(last_cell(by_count[str(count)], count) for count in counts)))
        lines.append("")
    if "slow_reader" in results:
        lines += ["## Slow readers of an 8 MiB static file", "",
                  "runserver.py with `--static` and `--body-timeout %g`: one client reads the "
                  "file at about %s KB/s, another stops reading after %s bytes and waits. "
                  "Bytes are of the body; the last column is runserver.py's access log line."
                  % (BODY_TIMEOUT, READ_RATE // 1000, format(STOP_AFTER, ",")),
                  "", "| server | client | body bytes received | time | access log |",
                  "|---|---|---:|---:|---|"]
        for name, run in results["slow_reader"].items():
            whole, stalled = run["whole"], run["stalled"]
            label = describe(name, ctx).replace(" --quiet", "")
            lines.append("| %s | reads at %s KB/s | %s | %.1f s | `%s` |" % (
                label, READ_RATE // 1000, format(whole["received"], ","), whole["seconds"],
                access_part(whole["log"])))
            dropped = stalled["dropped_after"]
            lines.append("| %s | stops after %s bytes | %s | %s | `%s` |" % (
                label, format(STOP_AFTER, ","), format(stalled["received"], ","),
                "dropped %.1f s later" % dropped if dropped is not None
                else "not dropped within %g s" % (BODY_TIMEOUT * 5), access_part(stalled["log"])))
        lines.append("")
    return "\n".join(lines)


def last_cell(runs, count):
    good = [run for run in runs if "slow_ok" in run]
    if not good:
        return "failed"
    lasts = [run["slow_last"] for run in good if run["slow_last"] is not None]
    answered = min(run["slow_ok"] for run in good)
    text = "%.1f s" % statistics.median(lasts) if lasts else "none"
    return text if answered == count else "%s (%s answered)" % (text, format(answered, ","))


def access_part(line):
    """The request line, status, bytes and note of an access log line."""
    if not line:
        return "no log line"
    return line[line.find('"'):] if '"' in line else line


# ---------------------------------------------------------------- main ---


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per measurement")
    parser.add_argument("--only", default="stall,slow-reader",
                        help="scenarios, comma-separated: stall,slow-reader")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="stall scenario servers: " + ",".join(SERVERS))
    parser.add_argument("--counts", default="200,1000",
                        help="how many slow requests per burst (default 200,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--cap", type=float, default=15.0,
                        help="a burst run stops after this many seconds")
    parser.add_argument("--runserver", default=os.path.join(HERE, "..", "runserver.py"))
    parser.add_argument("--baseline", default=None,
                        help="another runserver.py to measure beside it (say, main's)")
    parser.add_argument("--baseline-name", default=None,
                        help="what to call it in the tables (default: its commit or hash)")
    parser.add_argument("--venv", default=os.path.join(HERE, ".venv"),
                        help="virtualenv for the peers (default: bench/.venv)")
    parser.add_argument("--output-dir", default=HERE)
    parser.add_argument("--burst-client", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.only = [part for part in args.only.split(",") if part]
    args.servers = [part for part in args.servers.split(",") if part]
    args.counts = [int(part) for part in args.counts.split(",") if part]
    if args.quick:
        args.repeat = 1
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.burst_client:
        port, count, cap = args.burst_client
        burst_client(int(port), int(count), cap)
        return 0
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    peers = ensure_venv(os.path.abspath(args.venv))
    workdir = tempfile.mkdtemp(prefix="runserver-stress-")
    ctx = Context(os.path.abspath(args.venv), os.path.abspath(args.runserver), workdir)
    names = list(args.servers)
    runservers = [("runserver", ctx.runserver)]
    if args.baseline:
        ctx.baseline = Context(ctx.venv, os.path.abspath(args.baseline), workdir)
        ctx.baseline_name = args.baseline_name or runserver_fingerprint(ctx.baseline.runserver)
        names.insert(1, "baseline")
        runservers.append(("baseline", ctx.baseline.runserver))
    results = {"meta": {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info()[0], "python": platform.python_version(), "peers": peers,
        "command": " ".join(["python3 bench/stress.py"] + [shlex.quote(a) for a in sys.argv[1:]]),
        "runserver_version": runserver_fingerprint(ctx.runserver),
        "counts": args.counts, "repeat": args.repeat, "cap": args.cap}}
    if args.baseline:
        results["meta"]["baseline_version"] = runserver_fingerprint(ctx.baseline.runserver)
    log("logs in %s" % workdir)
    try:
        if "stall" in args.only:
            section_stall(ctx, names, args.counts, args.repeat, args.cap, workdir, results)
        if "slow-reader" in args.only:
            section_slow_reader(ctx, runservers, workdir, results)
    finally:
        stop_all()
    text = markdown(results, ctx)
    print(text)
    with open(os.path.join(args.output_dir, "stress.md"), "w", encoding="utf-8") as file:
        file.write(text)
    with open(os.path.join(args.output_dir, "stress.json"), "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
