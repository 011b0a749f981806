#!/usr/bin/env python3
"""A TCP proxy whose connections a test can cut: the link dropping under a transfer.

Usage: python3 cut-proxy.py --listen PORT --to PORT

Forwards 127.0.0.1:LISTEN to 127.0.0.1:TO, one pair of threads per connection. SIGUSR1 resets every open
connection (both sides, RST); new ones are accepted as before. Prints `ready` once listening.
"""
import argparse
import signal
import socket
import struct
import threading

open_sockets = set()
lock = threading.Lock()


def pump(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with lock:
            for sock in (source, target):
                open_sockets.discard(sock)
                sock.close()


def cut(_signum, _frame):
    with lock:
        for sock in list(open_sockets):
            try:
                # SO_LINGER 0: close sends a reset, as a dropped link's next packet would get.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # shutdown wakes the pump threads blocked on it (a close alone would not); their ends close it.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        open_sockets.clear()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--to", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGUSR1, cut)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.listen))
    server.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", args.to))
        with lock:
            open_sockets.update((client, upstream))
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    main()
