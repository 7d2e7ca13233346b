"""Console safety rules for commands: which need an explicit confirmation gesture.

Arming, disarming, taking off and landing move (or drop) a vehicle: the console asks
for a deliberate gesture first — hold the send button (mouse, touch or keyboard,
``static/js/confirm.js``) or, without JavaScript, tick the Confirm box. The server
checks the ``confirm=yes`` field the gesture sets, so a stray tap or a replayed plain
form can never send one. API clients are not humans and are not asked.
"""

from __future__ import annotations

CONFIRM_COMMANDS = ("arm", "disarm", "takeoff", "land")


def confirmation_missing(command: str, confirm: str) -> bool:
    """True when ``command`` needs a confirmation and the form did not carry one."""
    return command in CONFIRM_COMMANDS and confirm != "yes"
