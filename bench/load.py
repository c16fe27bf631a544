#!/usr/bin/env python3
"""Load generator and small helpers for bench/run.sh.

  load.py freeport                 print a TCP port on 127.0.0.1 that is free now
  load.py wait PORT SECONDS        wait until something listens on 127.0.0.1:PORT
  load.py load PORT JOBS CLIENTS PID
                                   send JOBS protocol-1 requests for the trivial
                                   compiler over CLIENTS concurrent connections;
                                   print jobs/second, the CPU milliseconds per
                                   job spent by daemon PID and its descendants,
                                   the slowest job's milliseconds and the number
                                   of jobs whose response was not the expected one
  load.py mem PID                  print the number of processes in PID's tree,
                                   the sum of their VmRSS and of their Pss (KiB)

The load generator speaks raw distcc protocol 1 instead of running the distcc
client, so that the figure is the daemon's cost per job and not the client's
(the real client forks a preprocessor and takes locks for every job). It runs
the CLIENTS connections from one thread on one non-blocking event loop, so
that it takes at most one CPU however many clients it plays.
"""

import errno
import os
import selectors
import socket
import sys
import time


def packet(token, value):
    """One 12-byte header: token plus 8 lower-case hex digits."""
    return b"%s%08x" % (token, value)


def string(token, data):
    return packet(token, len(data)) + data


def request():
    """`trivcc -c x.c -o x.o` with a one-line source, as the 3.4 client sends it."""
    argv = [b"trivcc", b"-c", b"x.c", b"-o", b"x.o"]
    source = b"int x;\n"
    return (packet(b"DIST", 1) + packet(b"ARGC", len(argv))
            + b"".join(string(b"ARGV", a) for a in argv)
            + string(b"DOTI", source))


# trivcc writes exactly these bytes to its -o file (see run.sh); a response
# without them means the daemon did not really run the job.
EXPECTED = (b"DONE00000001STAT00000000SERR00000000SOUT00000000"
            b"DOTO00000006trivo\n")


def tree(root):
    """PID and all its descendants, found through the ppid field of /proc/*/stat."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    # The command name may hold spaces; fields resume after its ')'.
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(name)] = int(fields[1])
            except (OSError, IndexError):
                pass  # gone meanwhile
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return pids


def cpu_ticks(root):
    """utime+stime+cutime+cstime over the tree. Counting the reaped children's
    times (cutime, cstime) takes in the compilers the daemon ran, and for
    distccd the preforked children that have exited and been replaced."""
    total = 0
    for pid in tree(root):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ')' field 3 of stat(5) is index 0, so utime (14) is index 11.
        total += sum(int(x) for x in fields[11:15])
    return total


def status_kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem(root):
    pids = tree(root)
    rss = sum(status_kib("/proc/%d/status" % p, "VmRSS") for p in pids)
    pss = sum(status_kib("/proc/%d/smaps_rollup" % p, "Pss") for p in pids)
    print(len(pids), rss, pss)
    return 0


def freeport():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait(port, seconds):
    """Polls /proc/net/tcp{,6} for a LISTEN socket on the port. Connecting to
    find out would cost each daemon a failed job and a log line."""
    want = ":%04X" % port
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(name) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        # fields[1] is local address:port, fields[3] the state; 0A is LISTEN.
                        if fields[1].endswith(want) and fields[3] == "0A":
                            return 0
            except FileNotFoundError:
                pass
        time.sleep(0.02)
    print("nothing listens on 127.0.0.1:%d after %ss" % (port, seconds), file=sys.stderr)
    return 1


class Client:
    """One connection: send the whole request, read the response until EOF."""

    def __init__(self, sel, port, req):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        self.out = memoryview(req)
        self.got = bytearray()
        self.sel = sel
        self.started = time.monotonic()
        sel.register(self.sock, selectors.EVENT_WRITE, self)

    def step(self, mask):
        """Returns the response once the daemon has closed, else None."""
        if mask & selectors.EVENT_WRITE:
            n = self.sock.send(self.out)
            self.out = self.out[n:]
            if not self.out:
                self.sel.modify(self.sock, selectors.EVENT_READ, self)
            return None
        data = self.sock.recv(65536)
        if data:
            self.got += data
            return None
        self.sel.unregister(self.sock)
        self.sock.close()
        return bytes(self.got)


def load(port, jobs, clients, daemon):
    req = request()
    ticks0 = cpu_ticks(daemon)
    sel = selectors.DefaultSelector()
    started = done = failed = 0
    first_bad = None
    slowest = 0.0

    def start():
        nonlocal started
        started += 1
        Client(sel, port, req)

    t0 = time.monotonic()
    for _ in range(min(clients, jobs)):
        start()
    while done < jobs:
        events = sel.select(timeout=30)
        if not events:
            print("no progress for 30s after %d of %d jobs" % (done, jobs), file=sys.stderr)
            return 1
        for key, mask in events:
            try:
                resp = key.data.step(mask)
            except OSError as e:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                resp = ("error: %s" % e).encode()
            if resp is None:
                continue
            done += 1
            slowest = max(slowest, time.monotonic() - key.data.started)
            if resp != EXPECTED:
                failed += 1
                first_bad = first_bad or resp
            if started < jobs:
                start()
    elapsed = time.monotonic() - t0
    # A job's compiler may still be being reaped when its response is in; a
    # short pause lets its CPU time reach the daemon's cutime.
    time.sleep(0.05)
    cpu_ms = (cpu_ticks(daemon) - ticks0) * 1000.0 / os.sysconf("SC_CLK_TCK")
    print("%.1f %.3f %.1f %d" % (jobs / elapsed, cpu_ms / jobs, slowest * 1000, failed))
    if failed:
        print("load.py: %d of %d jobs failed; the first bad response: %r"
              % (failed, jobs, first_bad[:200]), file=sys.stderr)
    # A rare failed job is reported and counted (distccd 3.4 has been seen
    # to drop one in some ten thousand, see docs/benchmarks.md); more than
    # 1% means the figures describe something broken, not a daemon's speed.
    return 1 if failed * 100 > jobs else 0


def main(argv):
    if argv[1:2] == ["freeport"]:
        return freeport()
    if argv[1:2] == ["wait"] and len(argv) == 4:
        return wait(int(argv[2]), float(argv[3]))
    if argv[1:2] == ["load"] and len(argv) == 6:
        return load(int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]))
    if argv[1:2] == ["mem"] and len(argv) == 3:
        return mem(int(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
