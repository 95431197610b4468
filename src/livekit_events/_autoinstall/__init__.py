"""The startup hook of the launcher, ``python -m livekit_events``.

This directory is what the launcher puts at the front of ``PYTHONPATH``: its
``sitecustomize.py`` runs at the start of the launched program and of every
Python process started from it (multiprocessing ``spawn`` and ``forkserver``
children, subprocesses), and calls ``livekit_events.install()`` as soon as
``livekit.rtc`` has been imported there.  Processes of other interpreters
that inherit the variable run it too: it is written for every Python from
2.7 on, and only runs their own ``sitecustomize`` where livekit_events can't
be installed.  Processes not started by the launcher never see it.
"""
