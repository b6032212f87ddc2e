"""
The scheduler: which queued tasks go to which agent.

:mod:`~pyfarm.master.scheduler.planning` holds the pure rules
(requirements, ordering, batching, capacity), tested without a database;
:mod:`~pyfarm.master.scheduler.claim` turns them into a safe claim against
the database; :mod:`~pyfarm.master.scheduler.loop` runs the periodic pass
behind ``pyfarm-master scheduler``.
"""
