"""The Ray wiring in handvae.runtime that the commands' tests do not reach: the raylet's disk-full line
said once per node."""

import pytest

from handvae.runtime import _DiskFullOnce

# As Ray forwarded it on a CI machine whose disk was 96% full.
NOTICE = (
    "[2026-12-04 15:10:10,325 E 28038 28052] (raylet) file_system_monitor.cc:116: /tmp/ray/session_2026-12-04_"
    "15-09-57_012986_27874 is over 95% full, available space: 10.4276 GB; capacity: 251.972 GB. Object creation "
    "will fail if spilling is required."
)


def raylet(ip: str, *lines: str) -> dict:
    return {"ip": ip, "pid": "raylet", "is_err": True, "lines": list(lines)}


def test_the_disk_full_notice_is_one_warning_per_node_and_other_lines_pass(capsys):
    printed = []
    printer = _DiskFullOnce(printed.append)
    worker = {"ip": "10.0.0.1", "pid": 123, "is_err": False, "lines": ["epoch 1/2 ..."]}
    printer(raylet("10.0.0.1", NOTICE))
    printer(worker)
    printer(raylet("10.0.0.1", NOTICE, "another raylet line"))
    printer(raylet("10.0.0.2", NOTICE))

    assert printed == [worker, raylet("10.0.0.1", "another raylet line")]
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        "warning: Ray's temporary folder /tmp/ray/session_2026-12-04_15-09-57_012986_27874 (node 10.0.0.1) is on "
        "a disk over 95% full (10.4 GB free of 252 GB): past that mark Ray spills no objects to disk, so a job "
        "whose data outgrow the object store in memory fails. Free some space, or give Ray a temporary folder on "
        "a larger disk (RAY_TMPDIR for an embedded Ray, `ray start --temp-dir` on a cluster)",
        warnings[0].replace("10.0.0.1", "10.0.0.2"),
    ]


@pytest.mark.usefixtures("ray_local")
def test_init_ray_puts_the_notice_printer_in_place_of_rays_own():
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    printers = [handler for name, handler in global_worker_stdstream_dispatcher.handlers if name == "ray_print_logs"]
    assert [type(printer) for printer in printers] == [_DiskFullOnce]
