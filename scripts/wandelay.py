#!/usr/bin/env python3
"""WAN delay forwarder for the kith test network.

Usage: wandelay.py IF_A IF_B DELAY_MS

Passes every Ethernet frame that arrives on IF_A out of IF_B and the other way round,
each DELAY_MS milliseconds after it arrived (order kept). It stands in for `tc netem
delay` on kernels without netem. Run it inside the namespace that holds both interfaces;
it stops on SIGTERM.
"""

import collections
import signal
import socket
import sys
import threading
import time

ETH_P_ALL = 0x0003
MAX_QUEUE = 20000  # frames in flight per direction; more are dropped (a full buffer)


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return s


def pump(src, dst, delay):
    q = collections.deque()
    cv = threading.Condition()

    def reader():
        while True:
            data, addr = src.recvfrom(65535)
            # Frames this socket sent itself show up as outgoing; skip them.
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            with cv:
                if len(q) < MAX_QUEUE:
                    q.append((time.monotonic() + delay, data))
                    cv.notify()

    def writer():
        while True:
            with cv:
                while not q:
                    cv.wait()
                due, data = q[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with cv:
                q.popleft()
            try:
                dst.send(data)
            except OSError:
                pass  # e.g. the link is down: the frame is lost, as on a real link

    for f in (reader, writer):
        threading.Thread(target=f, daemon=True).start()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    a, b = open_if(sys.argv[1]), open_if(sys.argv[2])
    delay = float(sys.argv[3]) / 1000.0
    pump(a, b, delay)
    pump(b, a, delay)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
