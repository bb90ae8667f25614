"""One root error for labkit; subclasses carry what the CLI needs to say.

Exit codes are decided in exactly one place (``labkit.cli``) from these classes:
``InputError`` and ``RefusedError`` mean exit 2; anything that is a ``LabkitError``
and stops the whole run before anything started is exit 2 as well; partial failure
(some seats failed) is reported through results, not exceptions, and is exit 1.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Something labkit can explain in plain words: what is wrong, where, what to do."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  {self.hint}" if self.hint else "")


class InputError(LabkitError):
    """Bad roster, config or option; nothing has been created."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None,
                 key: str = "", hint: str = "") -> None:
        where = path
        if path and line is not None:
            where = f"{path}:{line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.path = path
        self.line = line
        self.key = key


class RefusedError(LabkitError):
    """labkit could do it but will not, for the user's money or data (over budget, ...)."""


class SandboxError(LabkitError):
    """The local sandbox cloud cannot start here (missing root, sshd, namespaces...)."""


class AwsError(LabkitError):
    """An AWS call failed in a way labkit cannot work around."""

    def __init__(self, message: str, *, code: str = "", region: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.region = region


class CapacityError(AwsError):
    """The zone or region has no capacity for this instance type right now."""


class QuotaError(AwsError):
    """An account limit (vCPU quota, instance limit) would be exceeded."""


class CredentialsError(AwsError):
    """No usable AWS credentials were found."""


class NotFoundError(AwsError):
    """The resource does not exist (already deleted, never created)."""
