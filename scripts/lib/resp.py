"""RESP, the Redis protocol, for the scripts that talk to a redis-server without a client library
(commit-load.py, presence-write-aof-cost.py, publish-order.py): one command encoded, one reply read."""


def command(*args):
    """A command as RESP bytes (each argument bytes, or anything str() makes text of)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    """One reply from a buffered socket file: bytes, None, or a list of them; an error reply raises."""
    line = f.readline()
    t = line[:1]
    if t == b"-":
        raise RuntimeError(line)
    if t in b"+:":
        return line[1:-2]
    if t == b"$":
        n = int(line[1:-2])
        return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        return [read_reply(f) for _ in range(int(line[1:-2]))]
    raise RuntimeError(line)
