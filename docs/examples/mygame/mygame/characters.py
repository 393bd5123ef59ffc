"""The typeclass of mygame's player characters."""

from evasync import DefaultCharacter


class Character(DefaultCharacter):
    """A player's character: the game's commands, and the demo server's look, say, who and quit,
    with py (any Python, in the game process) and reload for the superuser, the first account."""

    default_cmdsets = ("mygame.commands:GameCmdSet",
                       "evasync.server.commands:CharacterCmdSet")
