"""Errors a user can fix (bad data, bad config, wrong paths): the CLI shows them without a traceback."""


class UserError(Exception):
    """Base of every error whose message tells the user what to change."""
