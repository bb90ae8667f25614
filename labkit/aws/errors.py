"""botocore errors -> labkit errors, in one place, so the rest handles ``CapacityError``
or ``QuotaError`` and never an error-code string."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import botocore.exceptions

from labkit.errors import AwsError, CapacityError, CredentialsError, NotFoundError, QuotaError

CAPACITY_CODES = {"InsufficientInstanceCapacity", "Unsupported", "InsufficientCapacity",
                  "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity"}
QUOTA_CODES = {"VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded",
               "AddressLimitExceeded", "LimitExceeded", "LimitExceededException",
               "TooManyBuckets", "VolumeLimitExceeded"}
CREDENTIAL_CODES = {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException",
                    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
                    "InvalidAccessKeyId", "OptInRequired"}


def error_code(e: BaseException) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(code: str) -> bool:
    return (code.endswith(".NotFound") or code.endswith("NotFound") or code in {
        "NoSuchEntity", "NoSuchBucket", "NoSuchKey", "ResourceNotFoundException",
        "InvalidInstanceID.Malformed", "ParameterNotFound", "NotFoundException",
        "InvalidKeyPair.NotFound", "InvalidGroup.NotFound", "InvalidAllocationID.NotFound",
        "InvalidRequestException"})


@contextmanager
def aws_call(service: str, doing: str, *, region: str = "") -> Iterator[None]:
    """Run AWS calls, turning any botocore failure into a labkit error that says what
    labkit was doing, where, and what the instructor can do about it."""
    where = f" in {region}" if region else ""
    try:
        yield
    except botocore.exceptions.ClientError as e:
        code = error_code(e)
        msg = e.response.get("Error", {}).get("Message", "") or str(e)
        text = f"{doing}{where}: {code}: {msg}"
        if code in CAPACITY_CODES:
            raise CapacityError(text, code=code, region=region) from e
        if code in QUOTA_CODES:
            raise QuotaError(text, code=code, region=region,
                             hint="ask AWS for a higher quota (Service Quotas console) or "
                                  "add a region to `regions`") from e
        if code in CREDENTIAL_CODES:
            raise CredentialsError(text, code=code, region=region,
                                   hint="check your AWS credentials (aws configure, "
                                        "--profile) and that the region is enabled") from e
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
            raise AwsError(text, code=code, region=region,
                           hint="your AWS user lacks a permission labkit needs; "
                                "see README 'AWS permissions'") from e
        if is_not_found(code):
            raise NotFoundError(text, code=code, region=region) from e
        raise AwsError(text, code=code, region=region) from e
    except botocore.exceptions.NoCredentialsError as e:
        raise CredentialsError(f"{doing}: no AWS credentials found",
                               hint="run `aws configure`, set AWS_PROFILE, or pass --profile"
                               ) from e
    except (botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError) as e:
        raise AwsError(f"{doing}{where}: AWS cannot be reached ({e})",
                       hint="check the network; `labkit plan --offline` works without it"
                       ) from e
    except botocore.exceptions.BotoCoreError as e:
        raise AwsError(f"{doing}{where}: {e}") from e
