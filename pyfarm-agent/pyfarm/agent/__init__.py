"""PyFarm's agent: registers with the master, runs the frames it is given."""

__version__ = "0.1.0"
