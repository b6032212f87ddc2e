"""
Services: the only code that changes the master's state.

Each takes the SQLAlchemy session and ``now`` (an aware UTC datetime) as
arguments, raises :mod:`pyfarm.master.errors` on bad requests, and leaves
committing to the caller unless it says otherwise.
"""
