#!/usr/bin/env python3
"""Peak resident memory of one process, not counting its children.

  hwm.py COMMAND [ARG...]   run COMMAND; print its VmHWM in KiB on stdout
                            and exit with its exit status

GNU time's %M (the rusage of wait4) is the largest of the process and all the
descendants it waited for, which for a distcc client is the preprocessor, not
the client. This reads the client's own VmHWM from /proc at the moment it
exits: it runs COMMAND under ptrace with PTRACE_O_TRACEEXIT, which stops it
before its memory is released. Its children are not traced.
"""

import ctypes
import os
import signal
import sys

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEEXIT = 0x40
PTRACE_EVENT_EXIT = 6

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(request, pid, data=0):
    if libc.ptrace(request, pid, None, ctypes.c_void_p(data)) == -1:
        err = ctypes.get_errno()
        raise OSError(err, "ptrace(%d): %s" % (request, os.strerror(err)))


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def main(argv):
    if not argv:
        sys.exit(__doc__)
    pid = os.fork()
    if pid == 0:
        try:
            ptrace(PTRACE_TRACEME, 0)
            os.execvp(argv[0], argv)
        except OSError as e:
            print("hwm.py: %s: %s" % (argv[0], e), file=sys.stderr)
        os._exit(127)
    # The first stop is the SIGTRAP of the exec.
    _, status = os.waitpid(pid, 0)
    if not os.WIFSTOPPED(status):
        sys.exit(127)
    ptrace(PTRACE_SETOPTIONS, pid, PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC)
    ptrace(PTRACE_CONT, pid)
    hwm = None
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            break
        if os.WIFSIGNALED(status):
            code = 128 + os.WTERMSIG(status)
            break
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if sig == signal.SIGTRAP and event:
            # An event stop (exit or exec), not a signal to pass on.
            if event == PTRACE_EVENT_EXIT:
                hwm = vm_hwm(pid)
            sig = 0
        ptrace(PTRACE_CONT, pid, sig)
    if hwm is None:
        sys.exit("hwm.py: could not read VmHWM of %s" % argv[0])
    print(hwm)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
