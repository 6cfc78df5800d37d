#!/bin/sh
# Brings up the loopback interface of the current network namespace: `ip link set lo up`, or where
# there is no ip command (the GPU machine) the same SIOCSIFFLAGS ioctl from Python.
set -eu
if command -v ip >/dev/null 2>&1; then
  exec ip link set lo up
fi
exec python3 -c '
import fcntl, socket, struct
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
'
