"""The session's S3 bucket: course materials, EMR logs, a scratch prefix per seat."""

from __future__ import annotations

from pathlib import Path

import botocore.config

from labkit.aws.errors import aws_call
from labkit.aws.session import TAG_SESSION, Aws, session_tags, tag_dict
from labkit.errors import AwsError, NotFoundError

MATERIALS_PREFIX = "materials/"
LOGS_PREFIX = "logs/"
SEATS_PREFIX = "seats/"


def bucket_name(session: str, account_id: str) -> str:
    """Globally unique and found again without state: labkit-<session>-<account>."""
    return f"labkit-{session}-{account_id}"[:63]


def bucket_session(aws: Aws, region: str, bucket: str) -> str | None:
    """The bucket's session tag, None if it has none, raise NotFoundError if no bucket."""
    try:
        with aws_call("s3", f"reading the tags of bucket {bucket}", region=region):
            tags = aws.client("s3", region).get_bucket_tagging(Bucket=bucket)["TagSet"]
    except AwsError as e:
        if e.code in {"NoSuchTagSet", "NoSuchTagSetError"}:
            return None
        raise
    return tag_dict(tags).get(TAG_SESSION)


def ensure_bucket(aws: Aws, region: str, bucket: str, session: str) -> str:
    try:
        owner = bucket_session(aws, region, bucket)
    except NotFoundError:
        owner = "missing"
    if owner == session:
        return bucket
    if owner != "missing":
        raise AwsError(f"bucket {bucket} exists but is not tagged for session {session}",
                       hint="labkit never takes over an untagged bucket; pick another session")
    s3 = aws.client("s3", region)
    config: dict[str, object] = {"Tags": session_tags(session)}
    if region != "us-east-1":
        config["LocationConstraint"] = region
    with aws_call("s3", f"creating bucket {bucket}", region=region):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=config)
        # Tags are in the create call above; this repeats them for S3 endpoints and
        # emulators that predate tags on CreateBucket, so teardown always finds the bucket.
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": session_tags(session)})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    return bucket


def upload_materials(aws: Aws, region: str, bucket: str, archive: Path, sha256: str) -> str:
    """Upload once (skipped when the same archive is there) and return the object key."""
    key = f"{MATERIALS_PREFIX}{sha256[:16]}/{archive.name}"
    s3 = aws.client("s3", region)
    try:
        with aws_call("s3", "checking the course materials", region=region):
            s3.head_object(Bucket=bucket, Key=key)
        return key
    except AwsError:
        pass
    with aws_call("s3", "uploading the course materials", region=region):
        s3.upload_file(str(archive), bucket, key)
    return key


def presigned_get(aws: Aws, region: str, bucket: str, key: str, *, hours: int = 6) -> str:
    # Signature Version 4, asked for by name: botocore may presign with SigV2, which
    # S3 refuses in every region opened since 2014 and is retiring everywhere.
    client = aws.session().client("s3", region_name=region,
                                  config=botocore.config.Config(signature_version="s3v4"))
    with aws_call("s3", "signing the materials link", region=region):
        return str(client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=hours * 3600))
