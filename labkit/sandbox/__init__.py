"""labkit's local sandbox cloud: moto plays AWS, a real sshd plays every machine.

Used by ``labkit rehearse`` and by the tests. Call ``enter_isolated_network()`` first
thing in the process (before any thread starts), then::

    with Sandbox(workdir, regions=["eu-west-1"]) as cloud:
        env = cloud.environ()          # AWS_ENDPOINT_URL etc.; os.environ untouched
        ...

Every machine's sshd answers on port 22 of its public and private address (put on
``lo``) and on ``127.0.0.1:<its own port>``; ``cloud.ssh_config_path`` maps each
machine's addresses and instance id to that port (``HostName 127.0.0.1``, ``Port``,
``HostKeyAlias <public address>``), and is what labkit's ``ssh_config`` points at.

``python -m labkit.sandbox --workdir DIR --regions a,b -- CMD...`` runs a command
against a sandbox from the shell (``LABKIT_SANDBOX_SSH_CONFIG`` names that file).
"""

from labkit.sandbox.cloud import InstanceView, Sandbox, ssh_answers
from labkit.sandbox.machine import Machine
from labkit.sandbox.netns import enter_isolated_network, is_isolated


def enter_isolated_network_for_tests() -> str:
    """pytest's way in: enter the sandbox network, or return why not (never raise).

    Called from ``pytest_configure`` so that the whole test process, and every thread
    and child it starts, is in the sandbox network. On a host where that is refused the
    reason is returned, so tests needing the sandbox fail with it (they must not skip)
    while the other tests still run.
    """
    from labkit.errors import SandboxError

    try:
        enter_isolated_network()
    except SandboxError as exc:
        return str(exc)
    return ""


__all__ = ["InstanceView", "Machine", "Sandbox", "enter_isolated_network",
           "enter_isolated_network_for_tests", "is_isolated", "ssh_answers"]
