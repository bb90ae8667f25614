"""A small class, end to end on the sandbox: provision, every password logs in."""

from __future__ import annotations

from labkit.bootstrap import Target, password_login
from labkit.rehearsal import read_known_hosts


def test_three_students_get_working_seats(make_course) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    course.write(["ana", "bruno", {"student_id": "carla", "region": "us-east-1"}])
    result = course.labkit("provision", "roster.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = course.credentials()
    assert [r["student_id"] for r in rows] == ["ana", "bruno", "carla"]
    assert {r["region"] for r in rows} == {"eu-west-1", "us-east-1"}
    known = read_known_hosts(course.out / "known_hosts")
    for row in rows:
        target = Target(row["seat"], row["host"], row["username"], known[row["host"]],
                        course.out / "id_ed25519", str(course.cloud.ssh_config_path))
        assert password_login(target, row["password"]) == "ubuntu"
