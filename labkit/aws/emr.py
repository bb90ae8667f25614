"""EMR: the seats' clusters, created with the session tags in the create call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labkit import policies
from labkit.aws.errors import aws_call
from labkit.aws.session import TAG_SEAT, TAG_SESSION, Aws, session_tags, tag_dict

LIVE = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
ALL_BUT_GONE = LIVE + ["TERMINATING"]


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    region: str
    name: str
    state: str
    seat: str  # "" for the session's shared cluster
    created: str


def cluster_name(session: str, seat: str | None) -> str:
    return f"labkit {session}/{seat}" if seat else f"labkit {session} (shared)"


def create(aws: Aws, region: str, *, session: str, seat: str | None, release: str,
           instance_type: str, instance_count: int, idle_minutes: int, log_uri: str,
           subnet_id: str, job_flow_role: str, service_role: str) -> str:
    """One cluster that stays up waiting for steps, and ends itself when idle."""
    tags = session_tags(session, seat) + [
        {"Key": policies.EMR_MANAGED_POLICY_TAG[0], "Value": policies.EMR_MANAGED_POLICY_TAG[1]}]
    groups: list[dict[str, Any]] = [{"Name": "primary", "InstanceRole": "MASTER",
                                     "InstanceType": instance_type, "InstanceCount": 1,
                                     "Market": "ON_DEMAND"}]
    if instance_count > 1:
        groups.append({"Name": "core", "InstanceRole": "CORE", "InstanceType": instance_type,
                       "InstanceCount": instance_count - 1, "Market": "ON_DEMAND"})
    with aws_call("emr", f"creating the cluster for {seat or 'the session'}", region=region):
        resp = aws.client("emr", region).run_job_flow(
            Name=cluster_name(session, seat), ReleaseLabel=release, LogUri=log_uri,
            Applications=[{"Name": "Hadoop"}, {"Name": "Spark"}],
            Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True,
                       "TerminationProtected": False, "Ec2SubnetId": subnet_id},
            VisibleToAllUsers=True, JobFlowRole=job_flow_role, ServiceRole=service_role,
            AutoTerminationPolicy={"IdleTimeout": idle_minutes * 60},
            Tags=tags)
    return str(resp["JobFlowId"])


def find(aws: Aws, region: str, session: str, states: Sequence[str] = ALL_BUT_GONE
         ) -> list[Cluster]:
    """The session's clusters in a region: listed by name, confirmed by tag."""
    emr = aws.client("emr", region)
    prefix = cluster_name(session, None).removesuffix(" (shared)")
    out: list[Cluster] = []
    with aws_call("emr", "listing clusters", region=region):
        pages = emr.get_paginator("list_clusters").paginate(ClusterStates=list(states))
        candidates = [c for page in pages for c in page["Clusters"]
                      if c["Name"] == prefix + " (shared)" or c["Name"].startswith(prefix + "/")]
    for c in candidates:
        with aws_call("emr", "reading a cluster", region=region):
            desc = emr.describe_cluster(ClusterId=c["Id"])["Cluster"]
        tags = tag_dict(desc.get("Tags"))
        if tags.get(TAG_SESSION) != session:
            continue
        out.append(Cluster(cluster_id=c["Id"], region=region, name=c["Name"],
                           state=desc["Status"]["State"], seat=tags.get(TAG_SEAT, ""),
                           created=str(desc["Status"].get("Timeline", {})
                                       .get("CreationDateTime", ""))))
    return out


def state(aws: Aws, region: str, cluster_id: str) -> str:
    with aws_call("emr", "reading a cluster", region=region):
        return str(aws.client("emr", region).describe_cluster(
            ClusterId=cluster_id)["Cluster"]["Status"]["State"])


def terminate(aws: Aws, region: str, cluster_ids: Sequence[str]) -> None:
    ids = list(cluster_ids)
    for i in range(0, len(ids), 10):  # TerminateJobFlows takes at most 10 ids
        with aws_call("emr", "terminating clusters", region=region):
            aws.client("emr", region).terminate_job_flows(JobFlowIds=ids[i:i + 10])
