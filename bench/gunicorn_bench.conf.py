"""Gunicorn settings for bench/api_cashbacks.py: the bench passes this file with --config so that
a gunicorn.conf.py in the working directory does not change what is measured. Workers, bind and
the rest come from the bench's command line. No access log unless the bench asks for one."""

worker_class = "sync"
timeout = 60
backlog = 2048
loglevel = "warning"
errorlog = "-"
accesslog = None


# `api_cashbacks.py --cpu-probe`: thread CPU per function in every worker (bench/cpu_probe.py).
def post_worker_init(worker):
    import os

    if os.environ.get("CEZBEK_BENCH_CPU_PROBE_DIR"):
        _cpu_probe().install()


def worker_exit(server, worker):
    import os

    if os.environ.get("CEZBEK_BENCH_CPU_PROBE_DIR"):
        _cpu_probe().dump()


def _cpu_probe():
    import sys
    from pathlib import Path

    bench = str(Path(__file__).resolve().parent)
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import cpu_probe

    return cpu_probe
