"""moto's server, with unique public addresses: ``python -m labkit.sandbox.motoserver -p PORT``.

moto draws every public IPv4 address at random from 54.214.0.0/16, so two instances
of one class collide now and then (about 1 in 300 for 20 seats). In the sandbox a
machine really listens on its public address, so a collision would send one student
to another student's machine. This wrapper hands addresses out in sequence instead:
unique for the life of the server, still in moto's 54.214.0.0/16, new on every start
as on EC2 without an Elastic IP. Everything else is moto as shipped.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator


def _address_allocator(block: int) -> Callable[[], str]:
    """A thread-safe source of distinct public addresses, skipping .0 and .255.

    ``block`` (0-15) picks a different 4096 addresses for each sandbox of one process,
    as two sandboxes' machines share one network.
    """
    first = (block % 16) * 4096 + 256 + 10
    hosts: Iterator[int] = (n for n in itertools.count(first) if n % 256 not in (0, 255))
    lock = threading.Lock()

    def next_public_ip() -> str:
        with lock:
            n = next(hosts) % 65536
        return f"54.214.{n // 256}.{n % 256}"

    return next_public_ip


def patch_moto(block: int = 0) -> bool:
    """Replace moto's random public addresses; False (moto unchanged) if moto moved them."""
    try:
        import moto.ec2.models.elastic_network_interfaces as eni
        from moto.ec2 import utils
    except ImportError:
        return False
    if not hasattr(eni, "random_public_ip"):
        return False
    allocate = _address_allocator(block)
    eni.random_public_ip = allocate
    utils.random_public_ip = allocate
    return True


def main(argv: list[str] | None = None) -> None:
    """Patch moto, then run its own server entry point with the same arguments."""
    block = int(os.environ.get("LABKIT_SANDBOX_ADDRESS_BLOCK", "0") or 0)
    if not patch_moto(block):
        print("labkit sandbox: could not make moto's public addresses unique; "
              "two machines may share one", file=sys.stderr)
    from moto.server import main as moto_main
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
