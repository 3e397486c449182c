"""Gunicorn settings for bench/api_cashbacks.py: the bench passes this file with --config so that
a gunicorn.conf.py in the working directory does not change what is measured. Workers, bind and
the rest come from the bench's command line. No access log unless the bench asks for one."""

worker_class = "sync"
timeout = 60
backlog = 2048
loglevel = "warning"
errorlog = "-"
accesslog = None
