from labkit.bootstrap import Target, password_login
from labkit.rehearsal import read_known_hosts


def test_stable_addresses_survive_stop_and_start(make_course) -> None:
    course = make_course(["eu-west-1"])
    course.write(["ana", "bruno"], stable_addresses=True)
    r = course.labkit("provision", "roster.csv")
    assert r.returncode == 0, r.stdout + r.stderr
    before = {row["seat"]: row["host"] for row in course.credentials()}
    eips = course.boto("ec2", "eu-west-1").describe_addresses()["Addresses"]
    assert sorted(a["PublicIp"] for a in eips) == sorted(before.values())
    for r in (course.labkit("stop"), course.labkit("start")):
        assert r.returncode == 0, r.stdout + r.stderr
    rows = course.credentials()
    assert {row["seat"]: row["host"] for row in rows} == before
    known = read_known_hosts(course.out / "known_hosts")
    for row in rows:
        t = Target(row["seat"], row["host"], "ubuntu", known[row["host"]],
                   course.out / "id_ed25519", str(course.cloud.ssh_config_path))
        assert password_login(t, row["password"]) == "ubuntu"
    r = course.labkit("teardown", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert course.boto("ec2", "eu-west-1").describe_addresses()["Addresses"] == []
