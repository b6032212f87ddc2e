"""The agent's own errors (kept light: the CLI imports them)."""


class AgentError(Exception):
    """The agent cannot do what it was asked; the message says what to fix."""
