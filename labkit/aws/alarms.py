"""Billing alarms: CloudWatch ``EstimatedCharges`` (only published in us-east-1) at each
``budget.alarm_usd`` level, notifying ``budget.alarm_email`` through one SNS topic."""

from __future__ import annotations

from collections.abc import Sequence

from labkit.aws.errors import aws_call
from labkit.aws.session import Aws, session_tags

BILLING_REGION = "us-east-1"


def alarm_name(session: str, usd: float) -> str:
    return f"labkit-{session}-bill-over-{usd:g}-usd"


def ensure_billing_alarms(aws: Aws, session: str, levels: Sequence[float], email: str) -> list[str]:
    """Create (or update in place: both calls are idempotent by name) the topic and alarms."""
    if not levels:
        return []
    sns = aws.client("sns", BILLING_REGION)
    with aws_call("sns", "creating the billing alarm topic", region=BILLING_REGION):
        topic = sns.create_topic(Name=f"labkit-{session}-billing",
                                 Tags=session_tags(session))["TopicArn"]
        if email:
            subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
            if not any(s.get("Endpoint") == email for s in subs):
                sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=email)
    cw = aws.client("cloudwatch", BILLING_REGION)
    names = []
    for usd in sorted(set(levels)):
        name = alarm_name(session, usd)
        with aws_call("cloudwatch", f"creating billing alarm {name}", region=BILLING_REGION):
            cw.put_metric_alarm(
                AlarmName=name,
                AlarmDescription=f"labkit session {session}: the account's estimated charges "
                                 f"passed ${usd:g}",
                Namespace="AWS/Billing", MetricName="EstimatedCharges",
                Dimensions=[{"Name": "Currency", "Value": "USD"}],
                Statistic="Maximum", Period=21600, EvaluationPeriods=1,
                Threshold=float(usd), ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching", AlarmActions=[topic],
                Tags=session_tags(session))
        names.append(name)
    return names
